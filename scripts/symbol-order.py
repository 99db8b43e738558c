#!/usr/bin/env python3
"""Writes the linker's symbol order of the `dist` build (crates/openhive/symbol-order.txt)
from callgrind runs of that binary (scripts/symbol-order.sh makes them):

    scripts/symbol-order.py --bin target/dist/openhive IDLE.cg [LOAD.cg ...] \
        > crates/openhive/symbol-order.txt

The functions of --bin that ran in the first run (start-up and idle) come first, then
those that ran only in the next ones (the load), each group in the binary's current order;
functions that never ran keep the linker's default place after them. LLD then packs the
code an idle server runs into few pages instead of spreading it over most of the text (the
kernel maps 64 KiB around every page of a file mapping a process touches).

The names are the binary's own mangled symbols (callgrind with --demangle=no), in the v0
scheme (.cargo/config.toml): those do not change with the source, only with versions,
dependencies and the toolchain, so the file stays good across ordinary changes (legacy
names of generic instances did change with every edit of their crate). Names the build
does not have are ignored by the linker (--no-warn-symbol-ordering): a stale file costs
memory, never correctness.
"""
import argparse
import os
import subprocess
import sys


def executed(path, binary):
    """Functions of `binary` with any cost in a callgrind output (--compress-strings=no)."""
    names, ob, fn = set(), None, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("ob="):
                ob = os.path.basename(line[3:].strip())
            elif line.startswith("fn="):
                fn = line[3:].strip()
            elif fn and ob == binary and line[:1].isdigit():
                names.add(fn)
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("runs", nargs="+")
    a = ap.parse_args()

    nm = subprocess.run(
        ["nm", "--defined-only", a.bin], capture_output=True, text=True, check=True
    ).stdout
    address = {}
    for line in nm.splitlines():
        p = line.split()
        if len(p) == 3 and p[1] in "tT":
            address.setdefault(p[2], int(p[0], 16))

    binary = os.path.basename(a.bin)
    seen = set()
    for run in a.runs:
        group = sorted(
            (address[n], n) for n in executed(run, binary) - seen if n in address
        )
        seen.update(n for _, n in group)
        print(f"{run}: {len(group)} functions", file=sys.stderr)
        for _, name in group:
            print(name)


if __name__ == "__main__":
    main()
