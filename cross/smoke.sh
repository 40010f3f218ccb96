#!/usr/bin/env bash
# cross/smoke.sh TARGET — run the ARM wms-node under qemu-user against an x86 taobao-sandbox.
#
# Checks, in order, on the binary cross/build.sh left in dist/TARGET/:
#   1. `wms-node --version` prints the workspace version;
#   2. `wms-node check-config --config config/node.example.toml` passes;
#   3. `wms-node run` against a native taobao-sandbox with a pre-issued session makes a
#      successful signed TOP call (read back from the sandbox's GET /sandbox/calls);
#   4. it idles, and we report its resident memory (VmRSS of the qemu process, so qemu's own
#      overhead is included);
#   5. on SIGTERM it exits with status 0 within 5 s;
#   and all along it speaks systemd's notify protocol as the unit (cross/debian/wms-node.service,
#   Type=notify, WatchdogSec=) expects: READY=1, WATCHDOG=1 pings, STOPPING=1, received on a
#   datagram socket of our own through NOTIFY_SOCKET.
#
# Options:
#   --native   also run steps 3–5 with an x86-64 wms-node built by the same compiler and release
#              profile, to estimate the RSS without qemu's overhead (costs one more release build)
#
# Environment (optional): CROSS_DIST_DIR, CROSS_TARGET_DIR (as for build.sh);
#   SMOKE_SANDBOX   path to a native taobao-sandbox binary (default: built with `cargo build`)
#   SMOKE_TIMEOUT   seconds to wait for the first successful call (default: 90; qemu is slow)
#   SMOKE_IDLE      seconds to idle before sampling memory (default: 5)
#   SMOKE_KEEP      keep the work directory (logs, data dir) for inspection when set to 1
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<'EOF'
usage: cross/smoke.sh [--native] TARGET
  TARGET: aarch64-unknown-linux-gnu | armv7-unknown-linux-gnueabihf
Runs dist/TARGET/wms-node (from cross/build.sh TARGET) under qemu-user against a native
taobao-sandbox; see the header of this script.
EOF
}

native=no
args=()
for a in "$@"; do
    case "$a" in
        -h | --help)
            usage
            exit 0
            ;;
        --native) native=yes ;;
        -*)
            usage >&2
            exit 2
            ;;
        *) args+=("$a") ;;
    esac
done
[ "${#args[@]}" -eq 1 ] || {
    usage >&2
    exit 2
}
target_setup "${args[0]}"
ensure_run_deps

cd "$REPO_ROOT"
node_bin="$CROSS_DIST_DIR/$TARGET/wms-node"
[ -x "$node_bin" ] || die "$node_bin not found: run cross/build.sh $TARGET first"
version="$(awk -F'"' '/^\[workspace.package\]/ { p = 1 } p && /^version *=/ { print $2; exit }' Cargo.toml)"
[ -n "$version" ] || die "cannot read the workspace version from Cargo.toml"

timeout_s="${SMOKE_TIMEOUT:-90}"
idle_s="${SMOKE_IDLE:-5}"
# A short watchdog so the idle window sees several pings (the unit uses 30 s).
watchdog_s=2
# A fixed, obviously fake identity: the sandbox accepts exactly these, nothing else does.
app_key=12345678
app_secret=smoke-app-secret-0123456789abcdef
session=smoke-session-key

work="$(mktemp -d "${TMPDIR:-/tmp}/wms-smoke.XXXXXX")"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then
        log "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

fail() {
    local f
    for f in "$work"/*.log; do
        [ -e "$f" ] || continue
        printf -- '----- %s (last 40 lines) -----\n' "$(basename "$f")" >&2
        tail -n 40 "$f" >&2
    done
    die "smoke $TARGET: $*"
}

# exited PID: true once PID is gone or a zombie (kill -0 still succeeds on a zombie).
exited() {
    local state
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 0
    [ -z "$state" ] || [ "$state" = Z ]
}

# --- the native sandbox -----------------------------------------------------------------------
sandbox_bin="${SMOKE_SANDBOX:-}"
if [ -z "$sandbox_bin" ]; then
    log "building the native taobao-sandbox"
    cargo build --locked --quiet -p taobao-sandbox --bin taobao-sandbox
    sandbox_bin="$(cargo metadata --format-version 1 --no-deps --locked |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug/taobao-sandbox"
fi
[ -x "$sandbox_bin" ] || die "no sandbox binary at $sandbox_bin"

# start_sandbox NAME: starts a fresh sandbox, sets SANDBOX_URL.
start_sandbox() {
    local out="$work/$1.out" i
    "$sandbox_bin" --listen 127.0.0.1:0 --app-key "$app_key" --app-secret "$app_secret" \
        --session "$session" >"$out" 2>"$work/$1.log" &
    pids+=("$!")
    SANDBOX_PID=$!
    SANDBOX_URL=
    for ((i = 0; i < 300; i++)); do
        # "taobao-sandbox listening on http://127.0.0.1:PORT"
        SANDBOX_URL="$(head -n1 "$out" 2>/dev/null | grep -o 'https\?://[^ ]*' || true)"
        [ -n "$SANDBOX_URL" ] && break
        exited "$SANDBOX_PID" && fail "the sandbox exited before printing its URL"
        sleep 0.1
    done
    [ -n "$SANDBOX_URL" ] || fail "the sandbox printed no URL within 30 s"
    SANDBOX_URL="${SANDBOX_URL%/}"
}

# successful_calls: how many signed TOP calls the sandbox answered with code 0 (success). Its
# GET /sandbox/calls lists every gateway call as {"method","code","sub_code","fault"?,"at"};
# a call with a bad signature, timestamp or session is recorded with its error code instead.
successful_calls() {
    curl -fsS --max-time 5 "$SANDBOX_URL/sandbox/calls" 2>/dev/null |
        jq '[.[] | select(.code == 0 and (.method | startswith("taobao.")))] | length' \
            2>/dev/null || echo 0
}

# run_node LABEL CMD...: steps 3–5 with CMD as the way to start wms-node. Sets RSS_KB, HWM_KB,
# STOP_MS.
run_node() {
    local label="$1" i n=0 state
    shift
    start_sandbox "sandbox-$label"
    log "$label: sandbox at $SANDBOX_URL"
    local data="$work/data-$label"
    mkdir -p "$data"
    # systemd's side of Type=notify: a datagram socket whose messages we keep.
    local notify_sock="$work/notify-$label.sock" notify_log="$work/notify-$label.txt"
    socat -u "UNIX-RECV:$notify_sock" "OPEN:$notify_log,creat,append" 2>"$work/socat-$label.log" &
    pids+=("$!")
    for ((i = 0; i < 100; i++)); do
        [ -S "$notify_sock" ] && break
        sleep 0.05
    done
    [ -S "$notify_sock" ] || fail "$label: socat did not create $notify_sock"
    # The example config, pointed at the sandbox through the documented WMS_NODE__SECTION__KEY
    # overrides; every listener on port 0 so parallel runs never collide.
    WMS_NODE__NODE__DATA_DIR="$data" \
        WMS_NODE__TAOBAO__ENDPOINT="$SANDBOX_URL/router/rest" \
        WMS_NODE__TAOBAO__OAUTH_URL="$SANDBOX_URL/oauth" \
        WMS_NODE__TAOBAO__APP_KEY="$app_key" \
        WMS_NODE__TAOBAO__APP_SECRET="$app_secret" \
        WMS_NODE__TAOBAO__SESSION="$session" \
        WMS_NODE__MQTT__BROKER=embedded \
        WMS_NODE__MQTT__LISTEN=127.0.0.1:0 \
        WMS_NODE__HTTP__LISTEN=127.0.0.1:0 \
        RUST_LOG="${RUST_LOG:-info}" \
        NOTIFY_SOCKET="$notify_sock" \
        WATCHDOG_USEC="$((watchdog_s * 1000000))" \
        "$@" run --config config/node.example.toml >"$work/node-$label.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    local t0=$SECONDS
    while :; do
        n="$(successful_calls)"
        [ "$n" -gt 0 ] && break
        exited "$pid" && fail "$label: wms-node exited before making a successful call"
        [ $((SECONDS - t0)) -lt "$timeout_s" ] ||
            fail "$label: no successful signed call within $timeout_s s"
        sleep 0.2
    done
    log "$label: $n successful signed call(s) after $((SECONDS - t0)) s"

    # Idle: no more work is scheduled until the next poll; this is a measurement window, not a
    # synchronisation, so a plain sleep is right.
    sleep "$idle_s"
    exited "$pid" && fail "$label: wms-node exited while idle"
    RSS_KB="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")"
    grep -q 'READY=1' "$notify_log" 2>/dev/null || fail "$label: no READY=1 on NOTIFY_SOCKET"
    local pings
    pings="$(grep -o 'WATCHDOG=1' "$notify_log" | wc -l)"
    # Pings come every watchdog_s/2; demand half of what the idle time allows.
    [ "$pings" -ge "$((idle_s / watchdog_s))" ] ||
        fail "$label: only $pings WATCHDOG=1 pings in ${idle_s} s idle (WATCHDOG_USEC=${watchdog_s} s)"
    HWM_KB="$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")"

    local start_ns end_ns
    start_ns="$(date +%s%N)"
    kill -TERM "$pid"
    for ((i = 0; i < 60; i++)); do
        exited "$pid" && break
        sleep 0.1
    done
    end_ns="$(date +%s%N)"
    STOP_MS=$(((end_ns - start_ns) / 1000000))
    if ! exited "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        fail "$label: still running $STOP_MS ms after SIGTERM"
    fi
    local rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || fail "$label: exit status $rc after SIGTERM (want 0)"
    [ "$STOP_MS" -le 5000 ] || fail "$label: took $STOP_MS ms to exit after SIGTERM (limit 5000)"
    grep -q 'STOPPING=1' "$notify_log" || fail "$label: no STOPPING=1 on NOTIFY_SOCKET after SIGTERM"
    if grep -q 'panicked at' "$work/node-$label.log"; then
        fail "$label: wms-node panicked"
    fi
    kill -TERM "$SANDBOX_PID" 2>/dev/null || true
    wait "$SANDBOX_PID" 2>/dev/null || true
    log "$label: idle VmRSS $RSS_KB kB (peak $HWM_KB kB); $pings watchdog pings; exit 0 in $STOP_MS ms after SIGTERM"
}

# --- 1. version -------------------------------------------------------------------------------
got="$("$QEMU" "$node_bin" --version 2>&1)" || fail "--version failed: $got"
case "$got" in
    *"$version"*) log "version: $got" ;;
    *) fail "--version printed '$got', want version $version" ;;
esac

# --- 2. check-config --------------------------------------------------------------------------
if ! out="$("$QEMU" "$node_bin" check-config --config config/node.example.toml 2>&1)"; then
    printf '%s\n' "$out" >&2
    fail "check-config rejected config/node.example.toml"
fi
log "check-config: config/node.example.toml is valid"

# --- 3–5. run, idle, SIGTERM ------------------------------------------------------------------
run_node "$TARGET" "$QEMU" "$node_bin"
qemu_rss=$RSS_KB qemu_hwm=$HWM_KB qemu_stop=$STOP_MS

native_line=
if [ "$native" = yes ]; then
    log "building wms-node for x86_64 with the same compiler and profile"
    (
        export RUSTC="$CROSS_RUSTC" CARGO_TARGET_DIR="$CROSS_TARGET_DIR"
        nice -n "${CROSS_NICE:-19}" "$CROSS_CARGO" build --locked --release \
            --target x86_64-unknown-linux-gnu -p wms-node --bin wms-node
    )
    run_node native "$CROSS_TARGET_DIR/x86_64-unknown-linux-gnu/release/wms-node"
    native_line="$(printf '%-28s %10s kB %10s kB %8s ms' "x86_64 native" "$RSS_KB" "$HWM_KB" "$STOP_MS")"
fi

printf '\nsmoke %s: passed\n' "$TARGET"
printf '%-28s %13s %13s %11s\n' run "idle VmRSS" "peak VmHWM" "SIGTERM→exit"
printf '%-28s %10s kB %10s kB %8s ms\n' "$TARGET under $QEMU" "$qemu_rss" "$qemu_hwm" "$qemu_stop"
[ -z "$native_line" ] || printf '%s\n' "$native_line"
printf '(the qemu figures include the emulator'"'"'s own memory; the native run estimates the node alone)\n'
