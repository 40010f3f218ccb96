#!/usr/bin/env bash
# cross/smoke-ota.sh TARGET — an OTA update between two real ARM builds under qemu-user,
# driven through the launcher as systemd would drive it (there is no systemd here: this script
# plays its part, restarting the launcher when the node exits 75).
#
#   1. the package's build (dist/TARGET/wms-node, version V) runs through `wms-node launch`;
#   2. a second build, compiled with WMS_NODE_VERSION_OVERRIDE=V+1 (a different binary: only
#      the version constant differs), is signed with `ota sign`, served over HTTP, and
#      applied with `ota apply URL` against the running node: download, verification, the
#      inactive slot, then the node is asked to restart and exits 75;
#   3. restarted, the launcher runs the new build's self-test, commits it, and exec()s it:
#      `ota status` shows V+1 running from slot a, committed;
#   4. a failing build (the ARM wms-bridge, published as V+2: it does not know `ota gate`
#      and exits 2) is applied the same way; the launcher rolls it back and V+1 runs again.
#
# No Taobao endpoint is reachable during any of this: the gate never needs the internet.
#
# Needs dist/TARGET/wms-node and dist/TARGET/wms-bridge from cross/build.sh. The second node
# build goes to $CROSS_DIST_DIR/ota-next/TARGET/ (built here unless SMOKE_OTA_NEXT names one;
# with a warm target dir it recompiles only the wms-node crate and relinks).
#
# Environment (optional): CROSS_DIST_DIR, CROSS_TARGET_DIR (as for build.sh);
#   SMOKE_OTA_NEXT  path to an already built next version (skips its build)
#   SMOKE_TIMEOUT   seconds to wait for each step (default: 120; qemu is slow)
#   SMOKE_KEEP      keep the work directory when set to 1
set -euo pipefail
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
    -h | --help)
        sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    "")
        echo "usage: cross/smoke-ota.sh TARGET" >&2
        exit 2
        ;;
esac
target_setup "$1"
ensure_run_deps
command -v python3 >/dev/null || die "python3 is needed to serve the update over HTTP"

cd "$REPO_ROOT"
node_bin="$CROSS_DIST_DIR/$TARGET/wms-node"
bridge_bin="$CROSS_DIST_DIR/$TARGET/wms-bridge"
[ -x "$node_bin" ] || die "$node_bin not found: run cross/build.sh $TARGET first"
[ -x "$bridge_bin" ] || die "$bridge_bin not found: run cross/build.sh $TARGET first (it builds wms-bridge too)"
base="$(awk -F'"' '/^\[workspace.package\]/ { p = 1 } p && /^version *=/ { print $2; exit }' Cargo.toml)"
IFS=. read -r major minor patch <<<"${base%%-*}"
next="$major.$minor.$((patch + 1))"
bad="$major.$minor.$((patch + 2))"
timeout_s="${SMOKE_TIMEOUT:-120}"

next_bin="${SMOKE_OTA_NEXT:-}"
if [ -z "$next_bin" ]; then
    log "building wms-node $next for $TARGET (WMS_NODE_VERSION_OVERRIDE=$next)"
    t0=$SECONDS
    WMS_NODE_VERSION_OVERRIDE="$next" CROSS_BINS=wms-node \
        CROSS_DIST_DIR="$CROSS_DIST_DIR/ota-next" "$REPO_ROOT/cross/build.sh" "$TARGET" >&2
    log "second build took $((SECONDS - t0)) s"
    next_bin="$CROSS_DIST_DIR/ota-next/$TARGET/wms-node"
fi
[ -x "$next_bin" ] || die "no next build at $next_bin"
cmp -s "$node_bin" "$next_bin" && die "$next_bin is the same file as $node_bin"

work="$(mktemp -d "${TMPDIR:-/tmp}/wms-smoke-ota.XXXXXX")"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${SMOKE_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() {
    local f
    for f in "$work"/*.log; do
        [ -e "$f" ] || continue
        printf -- '----- %s (last 30 lines) -----\n' "$(basename "$f")" >&2
        tail -n 30 "$f" >&2
    done
    die "smoke-ota $TARGET: $*"
}
exited() {
    local state
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" || return 0
    [ -z "$state" ] || [ "$state" = Z ]
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
node() { "$QEMU" "$node_bin" --config "$work/node.toml" "$@"; }

# --- the box: config with a trusted key, no reachable Taobao ------------------------------------
data="$work/data"
http_port="$(free_port)"
node ota keygen --out "$work/fleet.key" >"$work/keygen.out" || fail "ota keygen failed"
pk="$(awk '/^public key:/ { print $3 }' "$work/keygen.out")"
[ -n "$pk" ] || fail "ota keygen printed no public key"
sed -e "s|^public_keys = \[\]|public_keys = [\"$pk\"]|" \
    -e "s|^data_dir = .*|data_dir = \"$data\"|" \
    -e "s|^listen = \"127.0.0.1:9870\"|listen = \"127.0.0.1:$http_port\"|" \
    -e "s|^listen = \"0.0.0.0:1883\"|listen = \"127.0.0.1:0\"|" \
    -e "s|^gate_timeout = .*|gate_timeout = \"${timeout_s}s\"|" \
    config/node.example.toml >"$work/node.toml"
grep -q "$pk" "$work/node.toml" || fail "could not put the key into the config"
export WMS_NODE__TAOBAO__APP_KEY=12345678 WMS_NODE__TAOBAO__APP_SECRET=smoke-app-secret \
    WMS_NODE__TAOBAO__ENDPOINT=http://127.0.0.1:9/router/rest \
    WMS_NODE__TAOBAO__OAUTH_URL=http://127.0.0.1:9/oauth
unset NOTIFY_SOCKET WATCHDOG_USEC

# --- the update server ------------------------------------------------------------------------
www="$work/www"
mkdir -p "$www"
python3 -u -m http.server --bind 127.0.0.1 0 --directory "$www" >"$work/http.log" 2>&1 &
pids+=("$!")
url=
for ((i = 0; i < 100; i++)); do
    url="$(grep -so 'port [0-9]*' "$work/http.log" | head -n1 | awk '{ print "http://127.0.0.1:" $2 }' || true)"
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || fail "the HTTP server did not start"

# launch LABEL: starts the launcher in its own process group; sets LAUNCH_PID.
launch() {
    setsid "$QEMU" "$node_bin" --config "$work/node.toml" --log-format json launch \
        --exec-via "$QEMU" >"$work/launch-$1.log" 2>&1 &
    LAUNCH_PID=$!
    pids+=("$LAUNCH_PID")
}
# status_field JQ: a field of `ota status --json` (from the running node, or the state file).
status_field() { node ota status --json 2>/dev/null | jq -r "$1"; }
# wait_running LABEL VERSION SLOT: the launcher started VERSION from SLOT ("null": the package)
# and the node is ready.
wait_running() {
    local t0=$SECONDS
    while :; do
        if grep -q '"ready"' "$work/launch-$1.log" 2>/dev/null &&
            [ "$(status_field '.state.launched.version')" = "$2" ] &&
            [ "$(status_field '.state.launched.slot')" = "$3" ] &&
            [ "$(status_field '.from_running_node')" = true ]; then
            return 0
        fi
        exited "$LAUNCH_PID" && fail "$1: the node exited (want $2 from slot $3 running)"
        [ $((SECONDS - t0)) -lt "$timeout_s" ] || fail "$1: $2 from slot $3 not running after $timeout_s s"
        sleep 0.5
    done
}
# wait_exit75 LABEL: the node stopped for the update (systemd would start the unit again).
wait_exit75() {
    local t0=$SECONDS rc=0
    while ! exited "$LAUNCH_PID"; do
        [ $((SECONDS - t0)) -lt 30 ] || fail "$1: the node did not stop for the update"
        sleep 0.2
    done
    wait "$LAUNCH_PID" || rc=$?
    [ "$rc" -eq 75 ] || fail "$1: exit status $rc, want 75 (restart for an update)"
}
# publish ARTIFACT NAME [--artifact-version V]: serves ARTIFACT and a signed manifest for it.
publish() {
    local artifact="$1" name="$2"
    shift 2
    cp "$artifact" "$www/$name"
    node ota sign "$www/$name" --key "$work/fleet.key" --url "$url/$name" \
        --out "$www/$name.manifest" "$@" >"$work/sign-$name.out" || fail "ota sign $name failed"
}

# --- 1. the package's build runs through the launcher -----------------------------------------
launch base
wait_running base "$base" null
log "1. $base (the package's build) runs through the launcher"

# --- 2. apply the next build over HTTP; the node restarts into it -----------------------------
publish "$next_bin" next
t0=$SECONDS
node ota apply "$url/next.manifest" >"$work/apply-next.log" 2>&1 || fail "ota apply of $next failed"
grep -q "installed $next into slot a" "$work/apply-next.log" || fail "apply did not install $next into slot a"
grep -q "restarts into it now" "$work/apply-next.log" || fail "the running node was not asked to restart"
wait_exit75 base
log "2. $next downloaded, verified and installed into slot a in $((SECONDS - t0)) s; the node exited 75"

# --- 3. the restart: trial, gate, commit, exec of slot a --------------------------------------
t0=$SECONDS
launch next
wait_running next "$next" a
[ "$(status_field '.state.committed.version')" = "$next" ] || fail "$next is not committed"
[ "$(status_field '.state.last.outcome')" = committed ] || fail "the last outcome is not 'committed'"
grep -q 'trial start' "$work/launch-next.log" || fail "no trial start in the launcher's log"
grep -q '/slots/a/wms-node' "/proc/$LAUNCH_PID/cmdline" || fail "the running process is not slot a's binary"
log "3. $next passed its gate, was committed and runs from slot a ($((SECONDS - t0)) s from the restart)"

# --- 4. a failing build is rolled back --------------------------------------------------------
publish "$bridge_bin" bad --artifact-version "$bad"
node ota apply "$url/bad.manifest" >"$work/apply-bad.log" 2>&1 || fail "ota apply of the failing build failed"
grep -q "installed $bad into slot b" "$work/apply-bad.log" || fail "the failing build was not installed into slot b"
wait_exit75 next
t0=$SECONDS
launch bad
wait_running bad "$next" a
[ "$(status_field '.state.last.outcome')" = rolled_back ] || fail "the failing build was not rolled back"
reason="$(status_field '.state.last.reason')"
case "$reason" in
    *"status 2"*) ;;
    *) fail "rolled back for an unexpected reason: $reason" ;;
esac
[ "$(status_field '.state.committed.version')" = "$next" ] || fail "the committed build changed"
log "4. $bad (a build that exits 2) was rolled back in $((SECONDS - t0)) s: $reason"

node ota status
kill -TERM "$LAUNCH_PID"
rc=0
wait "$LAUNCH_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"
printf '\nsmoke-ota %s: passed (%s → %s committed; %s rolled back)\n' "$TARGET" "$base" "$next" "$bad"
