#!/usr/bin/env bash
# Tests cross/rust-web.sh's version choice with made-up `apt-cache policy` and dpkg answers: the
# machine's packages are neither read nor changed. Run: bash cross/rust-web-test.sh
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# A workspace whose rust-version each case sets.
printf '[workspace]\nmembers = []\n\n[workspace.package]\nedition = "2024"\nrust-version = "1.90"\n' \
    >"$tmp/Cargo.toml"
RUST_WEB_REPO_ROOT="$tmp"
# shellcheck source=rust-web.sh
. "$here/rust-web.sh"

NEW=1.96.0+dfsg1-1~deb12u2
OLD=1.85.0+dfsg3-1~deb12u3

# Fakes: $tmp/policy/PKG holds what `apt-cache policy PKG` prints; $tmp/installed/PKG the
# installed version.
apt_policy() { cat "$tmp/policy/$1" 2>/dev/null || true; }
installed_version() { cat "$tmp/installed/$1" 2>/dev/null || true; }

# policy CANDIDATE INSTALLED VERSION...: `apt-cache policy` output in apt's own layout.
policy() {
    local candidate=$1 installed=$2 v
    shift 2
    printf '%s:\n  Installed: %s\n  Candidate: %s\n  Version table:\n' pkg "${installed:-(none)}" "$candidate"
    for v in "$@"; do
        if [ "$v" = "$installed" ]; then
            printf ' *** %s 500\n' "$v"
        else
            printf '     %s 500\n' "$v"
        fi
        printf '        500 http://deb.debian.org/debian bookworm/main amd64 Packages\n'
        if [ "$v" = "$installed" ]; then
            printf '        100 /var/lib/dpkg/status\n'
        fi
    done
}

# machine: a fresh machine whose every index downloaded (both versions everywhere).
machine() {
    rm -rf "$tmp/policy" "$tmp/installed"
    mkdir -p "$tmp/policy" "$tmp/installed"
    local p
    for p in rustc-web cargo-web rust-web-src libstd-rust-web-dev:arm64; do
        policy "$NEW" "" "$NEW" "$OLD" >"$tmp/policy/$p"
    done
}
installed() { printf '%s\n' "$2" >"$tmp/installed/$1"; }

failures=0
passes=0
# expect NAME STATUS EXPECTED_STDOUT EXPECTED_STDERR_SUBSTRING: runs rust_web_plan arm64.
expect() {
    local name=$1 want_rc=$2 want_out=$3 want_err=$4 out err rc=0
    out="$(rust_web_plan arm64 2>"$tmp/err")" || rc=$?
    err="$(cat "$tmp/err")"
    if [ "$rc" -ne "$want_rc" ] || [ "$out" != "$want_out" ] ||
        { [ -n "$want_err" ] && [[ "$err" != *"$want_err"* ]]; } ||
        { [ -z "$want_err" ] && [ -n "$err" ]; } ||
        [ "$(printf '%s' "$err" | grep -c '')" -gt 1 ]; then
        failures=$((failures + 1))
        printf 'FAIL %s\n  status %s (want %s)\n  stdout: %s\n  want:   %s\n  stderr: %s\n  want:   %s\n' \
            "$name" "$rc" "$want_rc" "$out" "$want_out" "$err" "$want_err"
    else
        passes=$((passes + 1))
        printf 'ok   %s\n' "$name"
    fi
}

ALL="rustc-web=$NEW
cargo-web=$NEW
rust-web-src=$NEW
libstd-rust-web-dev:arm64=$NEW"

machine
expect "a fresh machine installs every package at rustc-web's candidate" 0 "$ALL" ""

machine
for p in rustc-web cargo-web rust-web-src libstd-rust-web-dev:arm64; do installed "$p" "$NEW"; done
expect "nothing to do when all are installed at the candidate" 0 "" ""

machine
for p in rustc-web cargo-web rust-web-src libstd-rust-web-dev:arm64; do installed "$p" "$OLD"; done
expect "packages installed at an older version are upgraded" 0 "$ALL" ""

machine
installed rustc-web "$NEW"
installed cargo-web "$NEW"
installed rust-web-src "$OLD"
expect "only the packages not at the version are listed" 0 "rust-web-src=$NEW
libstd-rust-web-dev:arm64=$NEW" ""

machine
policy "$OLD" "" "$OLD" >"$tmp/policy/libstd-rust-web-dev:arm64"
expect "an arm64 index that did not download is a mismatch named in one line" 1 "" \
    "error: libstd-rust-web-dev:arm64 has $OLD where rustc-web has $NEW"

machine
policy "(none)" "" >"$tmp/policy/libstd-rust-web-dev:arm64"
expect "a package apt has no version of is named" 1 "" \
    "error: libstd-rust-web-dev:arm64 has no version where rustc-web has $NEW"

machine
policy "$NEW" "" "$NEW" "$OLD" >"$tmp/policy/libstd-rust-web-dev:arm64"
policy "$OLD" "" "$NEW" "$OLD" >"$tmp/policy/cargo-web"
expect "a version that is there but not the candidate is still installed exactly" 0 "$ALL" ""

machine
for p in rustc-web cargo-web rust-web-src libstd-rust-web-dev:arm64; do
    policy "$OLD" "" "$OLD" >"$tmp/policy/$p"
done
expect "a candidate older than rust-version stops with the versions" 1 "" \
    "error: rustc-web is $OLD (Rust 1.85.0), older than the workspace's rust-version 1.90"

machine
for p in rustc-web cargo-web rust-web-src libstd-rust-web-dev:arm64; do
    policy "$OLD" "$NEW" "$NEW" "$OLD" >"$tmp/policy/$p"
    installed "$p" "$NEW"
done
expect "an installed version newer than a stale candidate is kept" 0 "" ""

machine
installed cargo-web 1.97.0+dfsg1-1~deb12u1
expect "a companion installed newer than rustc-web is named" 1 "" \
    "error: cargo-web is installed at 1.97.0+dfsg1-1~deb12u1, newer than rustc-web's $NEW"

machine
rm "$tmp/policy/rustc-web"
expect "no candidate at all says so" 1 "" "error: rustc-web has no candidate version"

sed -i 's/rust-version = "1.90"/rust-version = "1.96"/' "$tmp/Cargo.toml"
machine
expect "rust-version equal to the candidate's is enough" 0 "$ALL" ""
sed -i 's/rust-version = "1.96"/rust-version = "1.96.1"/' "$tmp/Cargo.toml"
expect "rust-version with a patch level above the candidate stops" 1 "" \
    "older than the workspace's rust-version 1.96.1"

# The helpers on their own.
check() {
    if [ "$2" = "$3" ]; then
        passes=$((passes + 1))
        printf 'ok   %s\n' "$1"
    else
        failures=$((failures + 1))
        printf 'FAIL %s: got %q, want %q\n' "$1" "$2" "$3"
    fi
}
check "upstream version of a Debian version" "$(upstream_version "$NEW")" 1.96.0
check "upstream version drops an epoch" "$(upstream_version 1:7.2+dfsg-7)" 7.2
check "the workspace's own rust-version is read" \
    "$(workspace_rust_version "$here/../Cargo.toml" | grep -cE '^[0-9]+\.[0-9]+(\.[0-9]+)?$')" 1
check "policy_versions reads the installed line too" \
    "$(policy "$NEW" "$NEW" "$NEW" "$OLD" | policy_versions | tr '\n' ' ')" "$NEW $OLD "

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
