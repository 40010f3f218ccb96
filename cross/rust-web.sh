# shellcheck shell=bash
# cross/rust-web.sh — which version of Debian's Rust (`rustc-web` and its companions) to install,
# and the exact `apt-get install` arguments for it. Sourced by .ci/run and cross/lib.sh; tested
# by cross/rust-web-test.sh with made-up `apt-cache policy` output.
#
# Why one explicit version: bookworm main carries rustc-web 1.85 and bookworm-security a newer
# one (1.96 at the time of writing). When one architecture's index of the security archive does
# not download (a mirror in mid-sync), apt resolves `libstd-rust-web-dev:arm64` to 1.85 and
# `rustc-web` to 1.96 and gives up with "held broken packages". So: read the candidate of
# `rustc-web`, install every Rust package at exactly that version (`pkg=V`, `pkg:arm64=V`), and
# when a package does not have it, stop with one line that says which package has which version.
#
# What it must never do: install anything itself, or exit the shell that sources it (every
# function returns a status; the caller decides).

RUST_WEB_REPO_ROOT="${RUST_WEB_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

# The packages that must agree on one version. The standard library for a target architecture
# is added per architecture (`libstd-rust-web-dev:arm64`).
RUST_WEB_PACKAGES=(rustc-web cargo-web rust-web-src)

# apt_policy PKG: `apt-cache policy PKG`. A function so that the tests can feed made-up output.
apt_policy() { LC_ALL=C apt-cache policy "$1" 2>/dev/null; }

# installed_version PKG: the installed version of PKG (PKG may carry `:arch`), or nothing.
installed_version() {
    local status
    status="$(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null)" || return 0
    case "$status" in
        "install ok installed "*) printf '%s\n' "${status#install ok installed }" ;;
    esac
}

# policy_candidate: reads `apt-cache policy` output on stdin, prints the candidate (nothing
# when apt knows no candidate: "(none)" or a package it has never heard of).
policy_candidate() {
    awk '$1 == "Candidate:" && $2 != "(none)" { print $2; exit }'
}

# policy_versions: reads `apt-cache policy` output on stdin, prints every version in its version
# table, one a line. Version lines are indented by five columns (" *** " marks the installed
# one); the source lines under them by eight.
policy_versions() {
    awk '/^ \*\*\* [^ ]/ { print $2; next } /^     [^ ]/ { print $1 }'
}

# upstream_version DEBIAN_VERSION: "1.96.0+dfsg1-1~deb12u2" -> "1.96.0".
upstream_version() {
    local v="${1#*:}"
    v="${v%%[+~-]*}"
    printf '%s\n' "$v"
}

# version_at_least A B: true when the Rust version A (1.96.0) is B (1.90 or 1.90.0) or newer.
version_at_least() {
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]
}

# workspace_rust_version [CARGO_TOML]: the `rust-version` of [workspace.package].
workspace_rust_version() {
    local toml="${1:-$RUST_WEB_REPO_ROOT/Cargo.toml}" v
    v="$(awk '
        /^\[/ { section = $0; next }
        section == "[workspace.package]" && $1 == "rust-version" {
            gsub(/.*=[ \t]*"|".*/, ""); print; exit
        }' "$toml")"
    if [ -z "$v" ]; then
        echo "error: no rust-version in [workspace.package] of $toml" >&2
        return 1
    fi
    printf '%s\n' "$v"
}

# rust_web_plan ARCH...: decides the one version of Debian's Rust to use and prints the
# `apt-get install` arguments, one a line: `pkg=VERSION` for each package of RUST_WEB_PACKAGES
# and `libstd-rust-web-dev:ARCH=VERSION` for each ARCH, leaving out those already installed at
# that version (an older installed one is listed, so apt upgrades it). Prints nothing when all
# are in place, and nothing when it fails. The version is `rustc-web`'s candidate, or the
# installed `rustc-web` if that is newer (apt never downgrades on its own, and a partial index
# update must not undo a good install).
#
# Fails, with one line on stderr naming the package and its version, when the version is older
# than the workspace's rust-version, when a package does not have that version, or when one is
# installed at a newer version than the others.
rust_web_plan() {
    local want policy candidate installed required v pkg
    policy="$(apt_policy rustc-web)"
    candidate="$(printf '%s\n' "$policy" | policy_candidate)"
    installed="$(installed_version rustc-web)"
    want="$candidate"
    if [ -n "$installed" ] &&
        { [ -z "$want" ] || dpkg --compare-versions "$installed" gt "$want"; }; then
        want="$installed"
    fi
    if [ -z "$want" ]; then
        echo "error: rustc-web has no candidate version (is bookworm in the apt sources, and did apt-get update run?)" >&2
        return 1
    fi
    required="$(workspace_rust_version)" || return 1
    v="$(upstream_version "$want")"
    if ! version_at_least "$v" "$required"; then
        echo "error: rustc-web is $want (Rust $v), older than the workspace's rust-version $required (is bookworm-security in the apt sources?)" >&2
        return 1
    fi
    local pkgs=("${RUST_WEB_PACKAGES[@]}") arch plan=()
    for arch in "$@"; do
        pkgs+=("libstd-rust-web-dev:$arch")
    done
    for pkg in "${pkgs[@]}"; do
        installed="$(installed_version "$pkg")"
        if [ "$installed" = "$want" ]; then
            continue
        fi
        if [ -n "$installed" ] && dpkg --compare-versions "$installed" gt "$want"; then
            echo "error: $pkg is installed at $installed, newer than rustc-web's $want; install one version of all: apt-get install rustc-web=$installed" >&2
            return 1
        fi
        policy="$(apt_policy "$pkg")"
        if ! printf '%s\n' "$policy" | policy_versions | grep -qxF -- "$want"; then
            candidate="$(printf '%s\n' "$policy" | policy_candidate)"
            echo "error: $pkg has ${candidate:-no version} where rustc-web has $want (one architecture's package index may not have downloaded: run apt-get update again)" >&2
            return 1
        fi
        plan+=("$pkg=$want")
    done
    # Printed only once every package passed, so a failure never leaves half a plan behind.
    [ "${#plan[@]}" -eq 0 ] || printf '%s\n' "${plan[@]}"
}
