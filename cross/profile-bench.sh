#!/usr/bin/env bash
# cross/profile-bench.sh [bench|size TARGET] — the numbers behind the release profile's opt-level.
#
#   bench        builds cross/profile-bench (signing, postcard, redb: the node's hot paths, with
#                the node's crate versions) natively once per variant and prints ns/op
#   size TARGET  builds wms-node for TARGET once per variant and prints its stripped size
#
# Variants: opt-level 3, "s", "z", and "s" or "z" with the hot-path crates kept at 3
# (per-package overrides, which survive fat LTO as per-function attributes). `oz-hot3` models
# the node crate at "z" calling the hot crates at 3; it is not in the default set:
# PROFILE_VARIANTS="os-hot3 oz-hot3" compares the two. Every variant keeps the rest of the root
# [profile.release] (fat LTO, one codegen unit, stripped); in `size` mode the root's
# per-package levels (hot crates at 3, the node and cold crates at "z") still apply on top, so
# a variant changes only the default level of the remaining crates. Each variant has its own
# target dir under $CROSS_TARGET_DIR/profile-VARIANT so switching never rebuilds the others.
# Results go to docs/BENCHMARKS.md by hand, with the commit they were measured at.
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The crates whose code runs per operation: TOP signing, the store's encoding, the store.
HOT_CRATES=(md-5 sha2 hmac digest block-buffer postcard redb)

variant_config() {
    case "$1" in
        o3) printf '%s\n' 'profile.release.opt-level=3' ;;
        os) printf '%s\n' 'profile.release.opt-level="s"' ;;
        oz) printf '%s\n' 'profile.release.opt-level="z"' ;;
        os-hot3)
            printf '%s\n' 'profile.release.opt-level="s"'
            local c
            for c in "${HOT_CRATES[@]}"; do
                printf 'profile.release.package."%s".opt-level=3\n' "$c"
            done
            ;;
        oz-hot3)
            printf '%s\n' 'profile.release.opt-level="z"'
            local c
            for c in "${HOT_CRATES[@]}"; do
                printf 'profile.release.package."%s".opt-level=3\n' "$c"
            done
            ;;
        *) die "unknown variant $1" ;;
    esac
}
read -r -a VARIANTS <<<"${PROFILE_VARIANTS:-o3 os oz os-hot3}"

# config_args VARIANT: --config flags for cargo.
config_args() {
    local line
    while IFS= read -r line; do printf -- '--config\n%s\n' "$line"; done < <(variant_config "$1")
}

mode="${1:-}"
case "$mode" in
    bench)
        results=()
        for v in "${VARIANTS[@]}"; do
            mapfile -t cfg < <(config_args "$v")
            dir="$CROSS_TARGET_DIR/profile-$v"
            log "bench: building variant $v"
            RUSTC="$CROSS_RUSTC" CARGO_TARGET_DIR="$dir" nice -n "${CROSS_NICE:-19}" \
                "$CROSS_CARGO" build --locked --release --quiet \
                --manifest-path "$REPO_ROOT/cross/profile-bench/Cargo.toml" "${cfg[@]}"
            log "bench: running variant $v"
            "$dir/release/wms-profile-bench" >"$dir/bench.txt"
            results+=("$dir/bench.txt")
        done
        # One row per case, one column per variant (ns/op, best of 7 rounds).
        printf '%-28s' case
        printf ' %9s' "${VARIANTS[@]}"
        printf '\n'
        paste "${results[@]}" | awk '{ printf "%-28s", $1; for (i = 2; i <= NF; i += 2) printf " %9s", $i; printf "\n" }'
        ;;
    size)
        [ "$#" -eq 2 ] || die "usage: cross/profile-bench.sh size TARGET"
        target_setup "$2"
        ensure_build_deps
        cross_env
        cd "$REPO_ROOT"
        printf '%-10s %12s %12s  (wms-node, %s, commit %s)\n' variant bytes size "$TARGET" \
            "$(git rev-parse --short HEAD)"
        for v in "${VARIANTS[@]}"; do
            mapfile -t cfg < <(config_args "$v")
            export CARGO_TARGET_DIR="$CROSS_TARGET_DIR/profile-$v"
            log "size: building variant $v"
            nice -n "${CROSS_NICE:-19}" "$CROSS_CARGO" build --locked --release --quiet \
                --target "$TARGET" -p wms-node --bin wms-node "${cfg[@]}"
            f="$CARGO_TARGET_DIR/$TARGET/release/wms-node"
            "$GNU_PREFIX-strip" --strip-all -o "$CARGO_TARGET_DIR/wms-node.stripped" "$f"
            bytes="$(stat -c %s "$CARGO_TARGET_DIR/wms-node.stripped")"
            printf '%-10s %12d %12s\n' "$v" "$bytes" "$(human_size "$bytes")"
        done
        ;;
    *)
        sed -n '2,12p' "$0" >&2
        exit 2
        ;;
esac
