# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables set here are read by the scripts that source it
# cross/lib.sh — shared by cross/build.sh, cross/smoke.sh and cross/package.sh. Source it; do
# not run it.
#
# What it owns: the table of supported ARM targets (Rust triple → GNU tool prefix → Debian
# architecture → qemu-user binary), the toolchain we cross-build with, and the one place that
# installs missing Debian packages (only as root, with retries, because the mirror is flaky).
# What it must never do: touch anything outside the repository and the cross target dir, or
# install anything when not root (it says what is missing and how to get it instead).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=rust-web.sh
. "$REPO_ROOT/cross/rust-web.sh"

# Binaries built for the box. The node is the product; the bridge runs next to it on boxes with
# UART devices; the sandbox is shipped for on-box demos and the smoke test's own use.
CROSS_BINARIES=(wms-node wms-bridge taobao-sandbox)

# Debian's rustc-web ships the ARM standard libraries as packages (libstd-rust-web-dev:ARCH);
# rustup's toolchain usually has no ARM std here and `rustup target add` needs a download. Both
# are overridable for people whose rustup toolchain has the targets installed.
CROSS_CARGO="${CROSS_CARGO:-/usr/bin/cargo}"
CROSS_RUSTC="${CROSS_RUSTC:-/usr/bin/rustc}"

# A target dir of our own: release+LTO artifacts for ARM never share a lock with the everyday
# debug builds in target/.
CROSS_TARGET_DIR="${CROSS_TARGET_DIR:-$REPO_ROOT/target/cross}"

# Where finished binaries are copied (gitignored).
CROSS_DIST_DIR="${CROSS_DIST_DIR:-$REPO_ROOT/dist}"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# target_setup TRIPLE: sets GNU_PREFIX, DEB_ARCH, QEMU, LD_SO, ELF_MACHINE, TARGET_ENV (the
# triple upper-cased with underscores, as cargo spells it in environment variables).
target_setup() {
    TARGET="$1"
    case "$TARGET" in
        aarch64-unknown-linux-gnu)
            GNU_PREFIX=aarch64-linux-gnu
            DEB_ARCH=arm64
            QEMU=qemu-aarch64
            LD_SO=/lib/ld-linux-aarch64.so.1
            ELF_MACHINE=AArch64
            ;;
        armv7-unknown-linux-gnueabihf)
            GNU_PREFIX=arm-linux-gnueabihf
            DEB_ARCH=armhf
            QEMU=qemu-arm
            LD_SO=/lib/ld-linux-armhf.so.3
            ELF_MACHINE=ARM
            ;;
        *)
            printf 'error: unsupported target %q; use aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf\n' \
                "$TARGET" >&2
            exit 2
            ;;
    esac
    TARGET_ENV="$(printf '%s' "$TARGET" | tr 'a-z-' 'A-Z_')"
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# apt_update_tolerant: the mirror sometimes fails a few index files. Retry, and carry on with
# whatever indexes we got: the install step is the one that decides.
apt_update_tolerant() {
    local attempt
    for attempt in 1 2 3 4; do
        if apt-get -o Acquire::Retries=3 update; then
            return 0
        fi
        warn "apt-get update failed (attempt $attempt of 4); retrying in $((attempt * 5)) s"
        sleep $((attempt * 5))
    done
    warn "apt-get update kept failing; trying the install with the indexes we have"
}

# apt_install PKG...: install as root with retries; a no-op for an empty list.
apt_install() {
    [ "$#" -gt 0 ] || return 0
    local attempt
    for attempt in 1 2 3; do
        if DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install -y \
            --no-install-recommends "$@"; then
            return 0
        fi
        warn "apt-get install failed (attempt $attempt of 3); refreshing indexes and retrying"
        apt_update_tolerant
    done
    die "could not install: $*"
}

# ensure_packages NEEDS_FOREIGN_ARCH PKG...: PKG... were found missing by the caller. As root,
# install them (adding the foreign dpkg architecture first when asked); otherwise print exactly
# what to run and fail.
ensure_packages() {
    local foreign="$1"
    shift
    [ "$#" -gt 0 ] || return 0
    if ! is_root; then
        {
            printf 'error: missing for %s: %s\n' "$TARGET" "$*"
            printf 'Install them as root (Debian bookworm), then re-run:\n'
            if [ "$foreign" = yes ]; then
                printf '  dpkg --add-architecture %s\n' "$DEB_ARCH"
            fi
            printf '  apt-get update\n  apt-get install --no-install-recommends %s\n' "$*"
            printf 'or run this script as root and it will do that itself.\n'
        } >&2
        exit 1
    fi
    if [ "$foreign" = yes ] && ! dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH"; then
        log "adding dpkg architecture $DEB_ARCH"
        dpkg --add-architecture "$DEB_ARCH"
    fi
    log "installing: $*"
    apt_update_tolerant
    apt_install "$@"
}

# rustc_version_ok RUSTC: true when RUSTC runs and is at least the workspace's rust-version.
rustc_version_ok() {
    local v required
    v="$("$1" --version 2>/dev/null | awk '{print $2}')" || return 1
    [ -n "$v" ] || return 1
    required="$(workspace_rust_version)" || return 1
    version_at_least "${v%%-*}" "$required"
}

# target_std_present RUSTC TRIPLE: the standard library for TRIPLE is installed for RUSTC.
target_std_present() {
    local libdir
    libdir="$("$1" --print target-libdir --target "$2" 2>/dev/null)" || return 1
    compgen -G "$libdir/libstd-*.rlib" >/dev/null
}

# ensure_build_deps: everything cross/build.sh needs for $TARGET. Debian's Rust packages are
# installed all at one version (cross/rust-web.sh), never one by one: a `libstd-rust-web-dev`
# that is not exactly rustc-web's version is no standard library for it.
ensure_build_deps() {
    local missing=() foreign=no debian_rust=no
    if [ "$CROSS_CARGO" = /usr/bin/cargo ] && [ ! -x /usr/bin/cargo ]; then
        debian_rust=yes
    fi
    if [ "$CROSS_RUSTC" = /usr/bin/rustc ] && ! rustc_version_ok /usr/bin/rustc; then
        debian_rust=yes
    fi
    if ! { [ -x "$CROSS_RUSTC" ] || command -v "$CROSS_RUSTC" >/dev/null; } ||
        ! target_std_present "$CROSS_RUSTC" "$TARGET"; then
        if [ "$CROSS_RUSTC" = /usr/bin/rustc ]; then
            debian_rust=yes
            foreign=yes
        elif [ "$debian_rust" = no ]; then
            die "$CROSS_RUSTC has no standard library for $TARGET (try: rustup target add $TARGET, or unset CROSS_RUSTC/CROSS_CARGO to use Debian's rustc-web)"
        fi
    fi
    command -v "$GNU_PREFIX-gcc" >/dev/null || missing+=("gcc-$GNU_PREFIX")
    [ -e "/usr/$GNU_PREFIX/lib/crt1.o" ] || missing+=("libc6-dev-$DEB_ARCH-cross")
    command -v "$GNU_PREFIX-strip" >/dev/null || missing+=("binutils-$GNU_PREFIX")
    if [ "$debian_rust" = yes ]; then
        if [ "$foreign" = yes ] && is_root &&
            ! dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH"; then
            log "adding dpkg architecture $DEB_ARCH"
            dpkg --add-architecture "$DEB_ARCH"
        fi
        is_root && apt_update_tolerant
        local plan
        plan="$(rust_web_plan "$DEB_ARCH")" || die "Debian's Rust cannot be installed at one version (above)"
        # shellcheck disable=SC2206  # one `pkg=version` a line, no spaces
        missing+=($plan)
    fi
    ensure_packages "$foreign" "${missing[@]}"
    rustc_version_ok "$CROSS_RUSTC" ||
        die "$CROSS_RUSTC ($("$CROSS_RUSTC" --version 2>/dev/null)) is older than the workspace's rust-version $(workspace_rust_version)"
    target_std_present "$CROSS_RUSTC" "$TARGET" ||
        die "$CROSS_RUSTC still has no standard library for $TARGET"
}

# ensure_run_deps: what cross/smoke.sh needs to run $TARGET binaries under qemu-user.
ensure_run_deps() {
    local missing=() foreign=no
    command -v "$QEMU" >/dev/null || missing+=(qemu-user)
    if [ ! -e "$LD_SO" ]; then
        missing+=("libc6:$DEB_ARCH")
        foreign=yes
    fi
    command -v curl >/dev/null || missing+=(curl)
    command -v jq >/dev/null || missing+=(jq)
    command -v socat >/dev/null || missing+=(socat)
    ensure_packages "$foreign" "${missing[@]}"
}

# cross_env: the environment for a cross cargo build of $TARGET.
cross_env() {
    export RUSTC="$CROSS_RUSTC"
    export CARGO_TARGET_DIR="$CROSS_TARGET_DIR"
    export "CARGO_TARGET_${TARGET_ENV}_LINKER=$GNU_PREFIX-gcc"
    # ring (rustls' crypto) compiles C and assembly through the cc crate.
    local cc_var
    cc_var="$(printf '%s' "$TARGET" | tr '-' '_')"
    export "CC_${cc_var}=$GNU_PREFIX-gcc"
    export "AR_${cc_var}=$GNU_PREFIX-ar"
}

# bin_package NAME: the workspace package that owns binary NAME.
bin_package() {
    case "$1" in
        wms-node) echo wms-node ;;
        wms-bridge) echo firmware-bridge ;;
        taobao-sandbox) echo taobao-sandbox ;;
        *) die "unknown binary $1" ;;
    esac
}

# human_size BYTES: "11.4 MiB".
human_size() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }
