#!/usr/bin/env python3
"""Pages written into SQLite's WAL, by table or index: what a workload costs in page writes.

usage: scripts/wal-frames.py DATA_DIR [UNITS | commit]

DATA_DIR holds `openhive.db` and an `openhive.db-wal` that was never checkpointed (build with
`wal_autocheckpoint` at 0, copy the data directory while the instance still runs: see
docs/PERFORMANCE.md, "Many hives per link → Seventh round"). Counts every frame of the WAL
by the page it writes, maps pages to tables and indexes with SQLite's `dbstat`, and prints
frames per 1,000 UNITS (e.g. the number of hives paired) and distinct pages, largest first;
with `commit`, frames per committed transaction (what each commit rewrites: docs/PERFORMANCE.md,
"Pages per transaction"). Only the WAL's current generation counts (frames whose salts match
its header), so a copy of a WAL that was checkpointed and restarted can be read too (stop the
instance with `kill -STOP` while copying). Reads a copy; needs Python's sqlite3 with dbstat
(Debian's has it).
"""
import collections
import sqlite3
import struct
import sys


def main() -> None:
    data_dir = sys.argv[1]
    per = sys.argv[2] if len(sys.argv) > 2 else "1000"
    wal = open(f"{data_dir}/openhive.db-wal", "rb").read()
    page_size = struct.unpack(">I", wal[8:12])[0]
    salts = wal[16:24]
    # Frames after the last commit frame belong to no committed transaction: not counted.
    frames, pending, commits, at = collections.Counter(), collections.Counter(), 0, 32
    while at + 24 + page_size <= len(wal):
        page, db_size = struct.unpack(">II", wal[at : at + 8])
        if wal[at + 8 : at + 16] != salts:
            break
        pending[page] += 1
        if db_size:
            frames.update(pending)
            pending.clear()
            commits += 1
        at += 24 + page_size
    print(f"frames {sum(frames.values())}, distinct pages {len(frames)}, commits {commits}")
    units, label = (max(commits, 1) * 1000.0, "per commit") if per == "commit" else (float(per), "per 1k")
    owner = dict(
        (page, name)
        for name, page in sqlite3.connect(f"{data_dir}/openhive.db").execute(
            "SELECT name, pageno FROM dbstat"
        )
    )
    written, distinct = collections.Counter(), collections.Counter()
    for page, n in frames.items():
        name = owner.get(page, "(free)")
        written[name] += n
        distinct[name] += 1
    for name, n in written.most_common(25):
        print(f"{name:40s} frames {label} {1000 * n / units:9.2f}  distinct pages {distinct[name]:7d}")


if __name__ == "__main__":
    main()
