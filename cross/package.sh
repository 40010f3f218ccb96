#!/usr/bin/env bash
# cross/package.sh TARGET — Debian packages for a gateway, from the binaries cross/build.sh left
# in dist/TARGET/.
#
# Produces dist/wms-node_VERSION_ARCH.deb (the daemon, its configuration, its hardened systemd
# unit) and, when dist/TARGET/wms-bridge exists, dist/wms-bridge_VERSION_ARCH.deb.
#
# Built with dpkg-deb from a staged tree rather than cargo-deb: dpkg-deb is on every Debian
# system, so packaging needs no extra tool to compile (cargo-deb would be a crates.io install on
# every CI run), the tree it packs is plain to read, and it packs what cross/build.sh already
# built instead of driving its own cross build. The maintainer scripts are the ones debhelper
# would generate for a unit (deb-systemd-helper / deb-systemd-invoke), written out in
# cross/debian/.
#
# Environment (optional): CROSS_DIST_DIR (as for build.sh); DEB_VERSION (default: the workspace
# version with Debian revision -1); DEB_MAINTAINER.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'EOF'
usage: cross/package.sh TARGET
  TARGET: aarch64-unknown-linux-gnu | armv7-unknown-linux-gnueabihf
Packs dist/TARGET/wms-node (and wms-bridge) into .deb files in dist/. See cross/README.md.
EOF
}
case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
    "")
        usage >&2
        exit 2
        ;;
esac
[ "$#" -eq 1 ] || {
    usage >&2
    exit 2
}
target_setup "$1"
cd "$REPO_ROOT"

for tool in dpkg-deb "$GNU_PREFIX-readelf" "$GNU_PREFIX-objdump" gzip; do
    command -v "$tool" >/dev/null || die "$tool not found (run cross/build.sh $TARGET first; it installs the cross binutils)"
done

version="$(awk -F'"' '/^\[workspace.package\]/ { p = 1 } p && /^version *=/ { print $2; exit }' Cargo.toml)"
[ -n "$version" ] || die "cannot read the workspace version from Cargo.toml"
deb_version="${DEB_VERSION:-$version-1}"
maintainer="${DEB_MAINTAINER:-wms-node maintainers <wms-node@example.invalid>}"
commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
# Reproducible timestamps in the package (changelog date, file mtimes): the commit time.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"

src="$CROSS_DIST_DIR/$TARGET"
work="$(mktemp -d "${TMPDIR:-/tmp}/wms-deb.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# shlib_depends BINARY: the Depends entries for the shared libraries BINARY links against. Rust
# binaries need only glibc and libgcc_s (unwinding); anything else (say an OpenSSL that crept in
# through a feature) is an error here, because the gateway image may not have it.
shlib_depends() {
    local bin="$1" lib glibc deps=()
    for lib in $("$GNU_PREFIX-readelf" -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        case "$lib" in
            libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux-*) ;;
            libgcc_s.so.1) deps+=("libgcc-s1") ;;
            *) die "$bin links against $lib, which the package does not declare; Rust binaries here should need only glibc and libgcc_s" ;;
        esac
    done
    # The newest GLIBC_x.y symbol version the binary uses is the oldest libc6 it runs on.
    glibc="$("$GNU_PREFIX-objdump" -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' |
        sort -uV | tail -n1)"
    [ -n "$glibc" ] || die "no GLIBC symbol versions found in $bin"
    printf 'libc6 (>= %s)' "$glibc"
    local d
    for d in "${deps[@]}"; do printf ', %s' "$d"; done
}

# changelog PACKAGE: a minimal Debian changelog naming the commit, as policy wants one.
changelog() {
    local date
    date="$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
    printf '%s (%s) stable; urgency=medium\n\n  * Built from commit %s.\n\n -- %s  %s\n' \
        "$1" "$deb_version" "$commit" "$maintainer" "$date"
}

# build_deb PACKAGE STAGE: writes DEBIAN/control from $control_* and packs STAGE.
build_deb() {
    local pkg="$1" stage="$2" out
    local doc="$stage/usr/share/doc/$pkg"
    install -d -m0755 "$doc"
    changelog "$pkg" | gzip -9n >"$doc/changelog.Debian.gz"
    cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: wms-node
Source: $(awk -F'"' '/^repository *=/ { print $2; exit }' Cargo.toml)

Files: *
Copyright: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y) the wms-node authors
License: Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0.
EOF
    chmod 0644 "$doc/copyright"
    local installed_kb
    installed_kb="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
    {
        printf 'Package: %s\nVersion: %s\nArchitecture: %s\n' "$pkg" "$deb_version" "$DEB_ARCH"
        printf 'Maintainer: %s\nInstalled-Size: %s\n' "$maintainer" "$installed_kb"
        printf 'Depends: %s\n' "$control_depends"
        [ -z "${control_recommends:-}" ] || printf 'Recommends: %s\n' "$control_recommends"
        printf 'Section: net\nPriority: optional\n'
        printf 'Description: %s\n' "$control_description"
    } >"$stage/DEBIAN/control"
    # Files from the tree keep their modes; owners are root (dpkg-deb --root-owner-group).
    find "$stage" -depth -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    out="$CROSS_DIST_DIR/${pkg}_${deb_version}_${DEB_ARCH}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
    log "$(basename "$out"): $(stat -c %s "$out") bytes"
    dpkg-deb --info "$out" | sed -n '/Package:/,$p'
    dpkg-deb --contents "$out"
}

# --- wms-node ---------------------------------------------------------------------------------
[ -x "$src/wms-node" ] || die "$src/wms-node not found: run cross/build.sh $TARGET first"
stage="$work/wms-node"
install -D -m0755 "$src/wms-node" "$stage/usr/bin/wms-node"
# The example lists every key with its default and already points data_dir at the unit's
# StateDirectory; it is the conffile as is. It is packed 0644 like any conffile (it is only the
# example then) and postinst makes it 0640 root:wms-node before anyone can put a secret in it.
grep -q '^data_dir *= *"/var/lib/wms-node"' config/node.example.toml ||
    die "config/node.example.toml no longer sets data_dir = \"/var/lib/wms-node\", which the unit's StateDirectory= provides"
install -D -m0644 config/node.example.toml "$stage/etc/wms-node/node.toml"
install -D -m0644 cross/debian/wms-node.service "$stage/lib/systemd/system/wms-node.service"
install -D -m0644 cross/debian/wms-node.sysusers "$stage/usr/lib/sysusers.d/wms-node.conf"
install -D -m0644 cross/README.md "$stage/usr/share/doc/wms-node/README.md"
install -D -m0644 docs/OPERATIONS.md "$stage/usr/share/doc/wms-node/OPERATIONS.md"
install -D -m0644 config/node.example.toml "$stage/usr/share/doc/wms-node/examples/node.toml"
install -d -m0755 "$stage/DEBIAN"
for s in postinst prerm postrm; do
    install -m0755 "cross/debian/wms-node.$s" "$stage/DEBIAN/$s"
done
printf '/etc/wms-node/node.toml\n' >"$stage/DEBIAN/conffiles"
control_depends="$(shlib_depends "$src/wms-node"), adduser"
control_recommends=systemd
control_description="warehouse gateway daemon for Taobao shops
 wms-node runs on a gateway box in a warehouse. It pulls paid orders and
 refunds from the Taobao Open Platform, turns them into pick tasks for barcode
 scanners over MQTT, prints shipping labels, and pushes shipments and stock
 back to Taobao. An offline-tolerant local store keeps everything the floor
 did across outages and power cuts.
 .
 This package installs the daemon, /etc/wms-node/node.toml and a hardened
 systemd unit (wms-node.service) whose only writable path is
 /var/lib/wms-node."
build_deb wms-node "$stage"

# --- wms-bridge -------------------------------------------------------------------------------
if [ -x "$src/wms-bridge" ] && [ -e cross/debian/wms-bridge.service ]; then
    stage="$work/wms-bridge"
    install -D -m0755 "$src/wms-bridge" "$stage/usr/bin/wms-bridge"
    install -D -m0644 cross/debian/wms-bridge.service "$stage/lib/systemd/system/wms-bridge.service"
    install -D -m0644 cross/debian/wms-bridge.sysusers "$stage/usr/lib/sysusers.d/wms-bridge.conf"
    install -D -m0644 cross/README.md "$stage/usr/share/doc/wms-bridge/README.md"
    install -d -m0755 "$stage/DEBIAN"
    for s in postinst prerm postrm; do
        install -m0755 "cross/debian/wms-bridge.$s" "$stage/DEBIAN/$s"
    done
    if [ -e config/bridge.example.toml ]; then
        grep -q '^spool_dir *= *"/var/lib/wms-bridge"' config/bridge.example.toml ||
            die "config/bridge.example.toml no longer sets spool_dir = \"/var/lib/wms-bridge\", which the unit's StateDirectory= provides"
        install -D -m0644 config/bridge.example.toml "$stage/etc/wms-bridge/bridge.toml"
        install -D -m0644 config/bridge.example.toml "$stage/usr/share/doc/wms-bridge/examples/bridge.toml"
        printf '/etc/wms-bridge/bridge.toml\n' >"$stage/DEBIAN/conffiles"
    fi
    control_depends="$(shlib_depends "$src/wms-bridge"), adduser"
    control_recommends=systemd
    control_description="serial-to-MQTT bridge for wms-node floor devices
 wms-bridge joins barcode scanners and label printers on UART or USB serial
 ports to the MQTT topics of a wms-node gateway. It runs as an unprivileged
 user in the dialout group under a hardened systemd unit (wms-bridge.service)."
    build_deb wms-bridge "$stage"
fi
