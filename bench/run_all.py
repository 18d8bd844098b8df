"""Every benchmark, one after the other, each in its own process: ``make bench``.

    .venv/bin/python bench/run_all.py [--big] [--quick]

- ``engine_bench.py`` (issue 2): stage times, MP4 writing; the 15 s 1080p peak-RSS job only with ``--big``;
- ``service_bench.py`` (issue 3): status polls, submit → first step, API overhead, worker RSS;
- ``fleet_bench.py`` (issue 5): claim throughput, killed-worker recovery;
- ``webhook_bench.py`` (issue 11): webhook delivery latency, a receiver's outage, the fair queue.

Each writes ``bench/results/<name>.json``; this writes them all into ``bench/results/all.json``. ``--quick`` runs
smaller versions (fewer rounds, runs and jobs) for a smoke test. A benchmark that fails is recorded as failed and
the others still run; the exit status is 1 then.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def plan(big: bool, quick: bool) -> list[tuple[str, list[str]]]:
    engine = [] if big else ["--skip-big"]
    service = ["--rounds", "2", "--first-step-runs", "3", "--overhead-runs", "1", "--rss-jobs", "20"] if quick else []
    fleet = ["--jobs", "50"] if quick else []
    webhooks = ["--jobs", "8", "--batch", "10", "--down", "2"] if quick else []
    return [("engine", ["engine_bench.py", *engine]), ("service", ["service_bench.py", *service]),
            ("fleet", ["fleet_bench.py", *fleet]), ("webhooks", ["webhook_bench.py", *webhooks])]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", action="store_true", help="include the 15 s 1080p 21:9 peak-RSS job")
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    merged: dict[str, object] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpus": os.cpu_count(),
                                 "loadavg_start": [round(x, 2) for x in os.getloadavg()]}
    failed = False
    for name, argv in plan(args.big, args.quick):
        out = RESULTS / f"{name}.json"
        out.unlink(missing_ok=True)
        cmd = [sys.executable, str(BENCH / argv[0]), *argv[1:], "--json", str(out)]
        print(f"== {' '.join(cmd)}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        done = subprocess.run(cmd)
        seconds = round(time.perf_counter() - t0, 1)
        if done.returncode == 0 and out.exists():
            merged[name] = {"command": " ".join(["python", f"bench/{argv[0]}", *argv[1:]]), "wall_s": seconds,
                            "results": json.loads(out.read_text())}
        else:
            failed = True
            merged[name] = {"command": " ".join(cmd), "failed": f"exit status {done.returncode}", "wall_s": seconds}
    merged["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    (RESULTS / "all.json").write_text(json.dumps(merged, indent=2) + "\n")
    print(f"all results in {RESULTS / 'all.json'}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
