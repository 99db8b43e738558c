#!/usr/bin/env bash
# Where the CPU of a synced write goes, on the origin (A) and on the replica (B).
#
#   cargo build --release -p openhive -p openhive-bench
#   scripts/profile-synced-writes.sh [BIN]     # BIN defaults to target/release/openhive
#
# Starts A and B on loopback (SQLite, temp data dirs), shares a hive, runs openhive-bench
# (16 clients, posts only, 10 s, CPU per op from /proc for both), samples both servers with
# `perf record --call-graph dwarf` for 4 s of the load, and prints the share of samples
# whose stack holds each frame of interest (inclusive, like `perf report --children`).
# Env: CLIENTS (16), SECS (10), RATE (unset: as fast as possible), OUT (/tmp/openhive-prof).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/target/release/openhive}
BENCH=$ROOT/target/release/openhive-bench
OUT=${OUT:-/tmp/openhive-prof}
rm -rf "$OUT" && mkdir -p "$OUT"
"$BIN" serve --listen 127.0.0.1:3900 --data-dir "$OUT/a" >"$OUT/a.log" 2>&1 & A=$!
"$BIN" serve --listen 127.0.0.1:3901 --data-dir "$OUT/b" >"$OUT/b.log" 2>&1 & B=$!
trap 'kill $A $B 2>/dev/null || true' EXIT
sleep 2
for p in a b; do
  pid=$([ $p = a ] && echo $A || echo $B)
  (sleep 5; perf record -F 997 -e cpu-clock --call-graph dwarf,32768 -p "$pid" \
     -o "$OUT/$p.data" -- sleep 4 >/dev/null 2>&1) &
done
"$BENCH" --url http://127.0.0.1:3900 --propagate-to http://127.0.0.1:3901 \
  -c "${CLIENTS:-16}" -d "${SECS:-10}" ${RATE:+--rate $RATE} --mix post --pid $A --pid $B
wait %3 %4 2>/dev/null || true
for p in a b; do
  echo "== $([ $p = a ] && echo "origin (A)" || echo "replica (B)"): inclusive share of samples"
  # c++filt: perf 6.1 without libbfd leaves v0-mangled names (.cargo/config.toml) as they are.
  perf script -i "$OUT/$p.data" 2>/dev/null | c++filt | python3 -c '
import re, sys
frames = ["db::writer_loop", "Conn::execute_batch", "vdbeCommit", "sqlite3WalDefaultHook",
  "ingest::append_and_apply", "log::append", "materialize::apply", "posts::created",
  "note_activity", "take_pending", "Verified::sign", "ingest::preverify", "fts5",
  "sqlite3LockAndPrepare", "hyper::proto", "axum::", "auth", "serde_json", "realtime::",
  "Store::read", "openhive_sync::", "malloc", "free"]
samples, cur = [], []
for line in sys.stdin:
    if line[:1] in " \t" and line.strip():
        parts = line.strip().split(" ", 1)
        if len(parts) == 2:
            # v0 names demangle as <crate[hash]::Type>::method: match them as Type::method.
            cur.append(re.sub(r"\[[0-9a-f]+\]|[<>]", "", parts[1]))
    else:
        if cur:
            samples.append(" ".join(cur))
        cur = []
if cur:
    samples.append(" ".join(cur))
n = len(samples) or 1
print(f"   {len(samples)} samples")
for f in frames:
    k = sum(1 for s in samples if f in s)
    print(f"   {f:28s} {100 * k / n:5.1f}%")
'
done
