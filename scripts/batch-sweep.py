#!/usr/bin/env python3
"""Synced closed loops at several client counts: CPU per post against the group commit.

For each round and each client count (alternated, so a drifting machine moves them alike),
starts two fresh instances A (:3900) and B (:3901), runs

    openhive-bench --url A --propagate-to B --mix post --pid A --pid B -c C -d SECS --json

and reads each instance's openhive_store_write_transactions_total from GET /metrics: the
run's posts over it are that side's posts per transaction (on B every push is one).
Prints one row per run, then a least-squares fit of each side's CPU per post against
1 / (posts per transaction): the part per post and the part per transaction (origin) or
per push (replica). docs/PERFORMANCE.md, "Batches, not clients".

    scripts/batch-sweep.py target/release/openhive target/release/openhive-bench \
        --clients 16,32,64,128 --rounds 3 --secs 10

With --baseline OTHER (another build of `openhive`), every run is made with OTHER first and
then with the server, side by side, and the means of both are printed: an alternated
comparison of two builds in one sitting.
"""

import argparse
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request

A, B = "http://127.0.0.1:3900", "http://127.0.0.1:3901"


def metric(url, name):
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise SystemExit(f"{name} missing from {url}/metrics")


def wait_healthy(url):
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not start")


def one_run(server, bench, clients, secs):
    tmp = tempfile.mkdtemp(prefix="batch-sweep-")
    procs, logs = [], []
    try:
        for port, name in ((3900, "a"), (3901, "b")):
            log = open(f"{tmp}/{name}.log", "w")
            logs.append(log)
            procs.append(subprocess.Popen(
                [server, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{tmp}/{name}"],
                stdout=log, stderr=subprocess.STDOUT))
        wait_healthy(A)
        wait_healthy(B)
        out = subprocess.run(
            [bench, "--url", A, "--propagate-to", B, "--mix", "post",
             "--pid", str(procs[0].pid), "--pid", str(procs[1].pid),
             "-c", str(clients), "-d", str(secs), "--json"],
            check=True, capture_output=True, text=True).stdout
        report = json.loads(out)
        tx = {u: metric(u, "openhive_store_write_transactions_total") for u in (A, B)}
        posts = report["load"]["ops"]
        return {
            "clients": clients,
            "posts_per_s": report["load"]["ops_per_sec"],
            "origin_us": report["processes"][0]["cpu_us_per_op"],
            "replica_us": report["processes"][1]["cpu_us_per_op"],
            "per_tx": posts / max(tx[A], 1),
            "per_push": posts / max(tx[B], 1),
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        for log in logs:
            log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def fit(xs, ys):
    """Least squares y = a + b x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return my - b * mx, b


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("server")
    ap.add_argument("bench")
    ap.add_argument("--clients", default="16,32,64,128")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--baseline", help="another openhive binary, run alternated with SERVER")
    args = ap.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    builds = [("baseline", args.baseline), ("server", args.server)] if args.baseline else [
        ("server", args.server)]
    runs, by_build = [], {name: [] for name, _ in builds}
    print("build     clients  posts/s  origin µs  replica µs  posts/tx  posts/push")
    for _ in range(args.rounds):
        for c in counts:
            for name, server in builds:
                r = one_run(server, args.bench, c, args.secs)
                by_build[name].append(r)
                if name == "server":
                    runs.append(r)
                print("%-8s  %7d  %7.0f  %9.1f  %10.1f  %8.1f  %10.1f" % (
                    name, r["clients"], r["posts_per_s"], r["origin_us"], r["replica_us"],
                    r["per_tx"], r["per_push"]), flush=True)
    if args.baseline:
        for c in counts:
            for name, _ in builds:
                rs = [r for r in by_build[name] if r["clients"] == c]
                print("mean %-8s %3d clients: %7.0f posts/s, origin %.1f µs, replica %.1f µs" % (
                    name, c, sum(r["posts_per_s"] for r in rs) / len(rs),
                    sum(r["origin_us"] for r in rs) / len(rs),
                    sum(r["replica_us"] for r in rs) / len(rs)))
    if len({r["clients"] for r in runs}) >= 2:
        a, b = fit([1 / r["per_tx"] for r in runs], [r["origin_us"] for r in runs])
        print(f"origin:  {a:.1f} µs per post + {b:.0f} µs per transaction")
        a, b = fit([1 / r["per_push"] for r in runs], [r["replica_us"] for r in runs])
        print(f"replica: {a:.1f} µs per post + {b:.0f} µs per push")


if __name__ == "__main__":
    main()
