"""Install time of installers, side by side: each installed as a pilot (dxforge.isolation.isolate:
the unprivileged user, offline, read-only HOME) into a new prefix, the installers interleaved round
by round; prints the best and the median of --repeat runs for each.

usage: .venv/bin/python benchmarks/bench_install_time.py INSTALLER [INSTALLER...] [--repeat N]
       [--where DIR]
--where: where the prefixes go (default: the system's temporary directory); /dev/shm compares
the CPU work alone on a machine whose disk is shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dxforge.isolation.isolate import Site  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("installers", nargs="+", type=Path)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--where", type=Path)
    args = ap.parse_args()
    times: dict[str, list[float]] = {str(p): [] for p in args.installers}
    cpu: dict[str, list[float]] = {str(p): [] for p in args.installers}
    with Site(args.where) as site:
        copies = []
        for i, inst in enumerate(args.installers):
            copy = site.root / f"{i}-{inst.name}"
            shutil.copy(inst, copy)
            copy.chmod(0o644)
            copies.append((str(inst), copy))
        for _ in range(args.repeat):
            for name, copy in copies:
                prefix = site.work / "diracos"
                os.sync()
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t = time.perf_counter()
                site.run(["sh", str(copy), "-b", "-p", prefix], check=True, what=name)
                times[name].append(time.perf_counter() - t)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
                site.run(["rm", "-rf", prefix], check=True)
    for name, runs in times.items():
        print(
            f"{name}: wall best {min(runs):.3f} s, median {statistics.median(runs):.3f} s; "
            f"CPU best {min(cpu[name]):.3f} s, median {statistics.median(cpu[name]):.3f} s "
            f"({len(runs)} runs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
