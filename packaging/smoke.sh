#!/usr/bin/env bash
# Smoke test of the frozen build: runs it with a bare environment (no Python, no venv on PATH):
# `arbd --version`, `arbd demo` for a few seconds, and `arbctl status` against that demo.
# Builds the onedir executable first unless dist/arbd/arbd exists (packaging/build.sh).
# Usage: packaging/smoke.sh [--rebuild]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--rebuild" ] || [ ! -x dist/arbd/arbd ]; then
    bash packaging/build.sh --no-onefile --no-deb
fi

bin="$PWD/dist/arbd"
run_dir=$(mktemp -d)
trap 'kill "$demo_pid" 2>/dev/null || true; rm -rf "$run_dir"' EXIT
bare=(env -i PATH=/usr/bin:/bin HOME="$run_dir" XDG_RUNTIME_DIR="$run_dir" LANG=C.UTF-8)

echo "== arbd --version"
"${bare[@]}" "$bin/arbd" --version
if "${bare[@]}" sh -c 'command -v python3 || command -v python' >/dev/null; then
    echo "   (a python exists on /usr/bin here; the build does not use it: it bundles its own)"
fi

echo "== arbd demo (background) + arbctl status"
"${bare[@]}" "$bin/arbd" demo --duration 30 >"$run_dir/demo.log" 2>&1 &
demo_pid=$!
status=1
for _ in $(seq 1 40); do
    sleep 0.5
    if "${bare[@]}" "$bin/arbctl" status >"$run_dir/status.txt" 2>&1; then
        if grep -q "live" "$run_dir/status.txt"; then
            status=0
            break
        fi
    fi
done
cat "$run_dir/status.txt"
if [ "$status" != 0 ]; then
    echo "smoke: arbctl status never showed a live exchange; demo log:" >&2
    tail -20 "$run_dir/demo.log" >&2
    exit 1
fi
"${bare[@]}" "$bin/arbd" ctl status --json >/dev/null
echo "== SIGTERM: graceful shutdown"
started=$(date +%s%N)
kill -TERM "$demo_pid"
wait "$demo_pid" || true
elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
echo "   stopped in ${elapsed_ms} ms (target: within 2 s)"
if [ -e "$run_dir/arbd/control.sock" ]; then
    echo "smoke: the control socket was left behind" >&2
    exit 1
fi
echo "== smoke test passed"
