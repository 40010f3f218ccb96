#!/bin/sh
# Proves that firmware-bridge's core is no_std: builds it for a Cortex-M4F microcontroller
# (thumbv7em-none-eabihf) without and with the `alloc` feature.
#
# rustup cannot download targets here, so this uses Debian's rustc-web (whichever version is
# installed; .ci/run installs it with rust-web-src at one version) and rebuilds core and alloc
# from the rust-web-src sources (`-Z build-std`, allowed on a stable compiler by
# RUSTC_BOOTSTRAP=1). A separate target dir keeps it off the main build's lock.
#
# Usage: firmware-bridge/ci-no-std.sh   (from anywhere inside the workspace)
set -eu

cd "$(dirname "$0")/.."

RUSTC=${NO_STD_RUSTC:-/usr/bin/rustc}
CARGO=${NO_STD_CARGO:-/usr/bin/cargo}
TARGET=thumbv7em-none-eabihf
export CARGO_TARGET_DIR="${NO_STD_TARGET_DIR:-$PWD/../target-thumb}"

if [ ! -x "$RUSTC" ] || [ ! -x "$CARGO" ]; then
    echo "ci-no-std: $RUSTC or $CARGO missing (Debian's rustc-web cargo-web rust-web-src, all at one version: see cross/README.md)" >&2
    exit 1
fi
if [ ! -d "$("$RUSTC" --print sysroot)/lib/rustlib/src/rust/library/core" ]; then
    echo "ci-no-std: Rust library sources missing (Debian's rust-web-src at $("$RUSTC" --version)'s version: see cross/README.md)" >&2
    exit 1
fi

for features in "" "alloc"; do
    echo "ci-no-std: building firmware-bridge for $TARGET, features: ${features:-none}"
    RUSTC="$RUSTC" RUSTC_BOOTSTRAP=1 "$CARGO" build --locked \
        -Z build-std=core,alloc --target "$TARGET" \
        -p firmware-bridge --no-default-features ${features:+--features "$features"}
done
echo "ci-no-std: ok"
