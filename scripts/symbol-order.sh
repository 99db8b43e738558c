#!/usr/bin/env bash
# Regenerates crates/openhive/symbol-order.txt, the order in which the linker lays out the
# `openhive` binary's functions (crates/openhive/build.rs), then rebuilds the `dist` binary:
#
#   scripts/symbol-order.sh          # needs valgrind (apt-get install valgrind); ~10 min
#
# Runs the `dist` binary under callgrind three times at once: one instance started and left
# idle, and two paired by the load generator at a low rate (default mix, WebSocket
# propagation from one to the other). The functions the idle instance ran come first in the
# file, then those the loaded ones ran (scripts/symbol-order.py). Worth redoing after a
# dependency or toolchain update, or a change of a dependency's features (a crate's symbol
# hashes change then: turning on rusqlite's `hooks` renamed all of rusqlite's, 458 of the
# file's names, and the idle server read 13.1 MB instead of 10.7; with v0 mangling, set in
# .cargo/config.toml, ordinary source changes keep them); a stale file only costs idle
# memory. Docs: docs/PERFORMANCE.md, "Idle RSS".
#
# Environment: ORDER_DIR (work directory, default target/symbol-order), ORDER_PORT (first of
# three loopback ports, default 31200, below the ephemeral ports).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
work=${ORDER_DIR:-$root/target/symbol-order}
port=${ORDER_PORT:-31200}
command -v valgrind >/dev/null || { echo "symbol-order: needs valgrind" >&2; exit 1; }

cd "$root"
cargo build --profile dist -p openhive
cargo build --release -p openhive-bench
rm -rf "$work"
mkdir -p "$work"
bin=$work/openhive
cp target/dist/openhive "$bin"

pids=()
stop_all() {
    [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop_all EXIT
run() { # run NAME PORT
    valgrind --tool=callgrind --demangle=no --dump-instr=no --compress-strings=no \
        --compress-pos=no --callgrind-out-file="$work/$1.cg" \
        "$bin" serve --listen "127.0.0.1:$2" --data-dir "$work/$1" >"$work/$1.log" 2>&1 &
    pids+=($!)
}
wait_up() { # wait_up PORT (under callgrind a start takes seconds)
    for _ in $(seq 600); do
        curl -fs "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "symbol-order: instance on port $1 did not start" >&2
    exit 1
}
run idle "$port"
run a $((port + 1))
run b $((port + 2))
for p in "$port" $((port + 1)) $((port + 2)); do wait_up "$p"; done
sleep 20 # the idle instance: start-up done, heartbeats and timers
target/release/openhive-bench --url "http://127.0.0.1:$((port + 1))" \
    --propagate-to "http://127.0.0.1:$((port + 2))" --rate 20 -d 15 --seed-posts 20 \
    --propagate-timeout 120
stop_all
pids=()

python3 scripts/symbol-order.py --bin "$bin" "$work/idle.cg" "$work/a.cg" "$work/b.cg" \
    >crates/openhive/symbol-order.txt
cargo build --profile dist -p openhive
echo "symbol-order: crates/openhive/symbol-order.txt; target/dist/openhive rebuilt"
