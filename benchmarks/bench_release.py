"""Release benchmark, in one run:

- `dxforge release` of a re-versioned upstream (DiracX's real sdists, next patch version) served
  by a package index on 127.0.0.1, on a fresh copy of the repository, with the user cache as it
  is (warm after a main job): total and each stage (start, end, branch);
- the main job on a fresh `git clone` of this repository, with the same user cache:
  `scripts/run-main.sh` as README gives it, split into set-up (the clone's `.venv`) and dxforge;
- with `--cold`, the same main job with an empty user cache (a scratch `XDG_CACHE_HOME`): the
  runtime build, the seed's wheels, the builds and the installer from nothing.

usage: .venv/bin/python benchmarks/bench_release.py [--cold] [--keep]
Prints each stage and the totals beside the goals (release <= 180 s, fresh clone <= 60 s,
empty cache <= 12 min). Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the rehearsal's loopback index and re-versioning


def clone_and_run(base: Path, env: dict[str, str], name: str) -> tuple[float, float, float]:
    """A fresh clone's main job: (set-up, dxforge, total) seconds."""
    clone = base / name
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    log = base / f"{name}.log"
    t = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(
            ["scripts/setup.sh"],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        setup = time.perf_counter() - t
        if proc.returncode == 0:
            proc = subprocess.run(
                ["scripts/run-main.sh"],
                cwd=clone,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
    total = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{name}: the main job failed ({proc.returncode}); see {log}")
    return setup, total - setup, total


def release(base: Path) -> tuple[float, dict]:
    """A release of the next patch version on a loopback index: (seconds, notes.json)."""
    from local_index import LocalIndex, serve
    from test_release_e2e import Rehearsal

    from dxforge.pypa.pypi import index_url

    with serve(LocalIndex(upstream=index_url(None))) as index:
        print("preparing the re-versioned upstream on 127.0.0.1 ...", file=sys.stderr)
        rehearsal = Rehearsal(base, index)
        print(f"dxforge release {rehearsal.old} -> {rehearsal.new} ...", file=sys.stderr)
        t = time.perf_counter()
        res = rehearsal.run()
        seconds = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(f"dxforge release failed ({res.returncode}):\n{res.stderr[-4000:]}")
    out = json.loads(res.stdout)
    notes = json.loads((Path(out["directory"]) / "notes.json").read_text())
    return seconds, notes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--cold",
        action="store_true",
        help="also the main job with an empty user cache (a scratch XDG_CACHE_HOME)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dxforge-bench-release-"))
    env = {k: v for k, v in os.environ.items() if k != "DXFORGE_BUILD_DIR"}
    rows: list[tuple[str, float, str]] = []
    try:
        seconds, notes = release(base / "release")
        rows.append(("release (warm cache, loopback index)", seconds, "<= 180 s"))
        print("\nrelease stages (seconds from the release's start):")
        start = min(s["start"] for s in notes["stages"])
        for s in notes["stages"]:
            print(
                f"  {s['name']:<12} {s['start'] - start:7.1f} -> {s['end'] - start:7.1f} "
                f"({s['end'] - s['start']:6.1f} s, branch {s.get('branch', 'main')})"
            )
        print("fresh clone, warm cache: scripts/run-main.sh ...", file=sys.stderr)
        setup, job, total = clone_and_run(base, env, "warm")
        rows += [
            ("fresh clone, warm cache: set-up (.venv)", setup, ""),
            ("fresh clone, warm cache: dxforge (seed, build, installer)", job, ""),
            ("fresh clone, warm cache: main job", total, "<= 60 s"),
        ]
        if args.cold:
            cache = base / "xdg-cache"
            cache.mkdir()
            print("fresh clone, empty cache: scripts/run-main.sh ...", file=sys.stderr)
            setup, job, total = clone_and_run(base, {**env, "XDG_CACHE_HOME": str(cache)}, "cold")
            rows += [
                ("fresh clone, empty cache: set-up (.venv)", setup, ""),
                ("fresh clone, empty cache: dxforge", job, ""),
                ("fresh clone, empty cache: main job", total, "<= 720 s"),
            ]
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    print()
    for name, seconds, goal in rows:
        print(f"{name:<58} {seconds:8.1f} s  {goal}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # py-rattler may abort at exit after async calls
