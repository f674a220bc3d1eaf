"""Build benchmark, ratios from one run:

- `dxforge build --force --jobs 1` of the nine recipes (into a fresh output channel) vs the sum
  of bare rattler-build builds of the same recipes, in the same order, from the same channels;
- `dxforge build --force --jobs 2` (a graph level's packages two at a time) vs `--jobs 1`;
- the no-op rebuild (a second `dxforge build`) vs the full build.

usage: .venv/bin/python benchmarks/bench_build.py [--keep]
Needs the seed channel (`dxforge seed`); runs `dxforge fetch` first (a no-op once the sources are
cached). Works in a temporary copy of the project (recipes and source cache), so the project's
own channel, work directories and logs are not touched.
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
DXFORGE = str(Path(sys.executable).with_name("dxforge"))

BARE = """
import json, os, sys, time
import rattler_build
spec = json.loads(sys.argv[1])
times = {}
for name, recipe in spec["recipes"]:
    t = time.perf_counter()
    rattler_build.Stage0Recipe.from_file(recipe).run_build(
        tool_config=rattler_build.ToolConfiguration(test_strategy="native", compression_threads=2),
        output_dir=spec["output_dir"],
        channels=spec["channels"],
    )
    times[name] = time.perf_counter() - t
with open(spec["result"], "w") as f:
    json.dump(times, f)
sys.stdout.flush()
os._exit(0)
"""


def run(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kw)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return dt, proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    from dxforge.builder.fetch import sources_url
    from dxforge.conda import channel as ch
    from dxforge.project.graph import load_graph
    from dxforge.project.layout import Layout

    seed = Layout.of(ROOT).seed
    if not (seed / "noarch/repodata.json").exists():
        sys.exit(f"{seed}: no seed channel; run `dxforge seed` first")
    run([DXFORGE, "fetch", "--root", str(ROOT)])

    tmp = Path(tempfile.mkdtemp(prefix="dxforge-bench-build-"))
    try:
        root = tmp / "proj"
        shutil.copytree(ROOT / "recipes", root / "recipes")
        shutil.copytree(Layout.of(ROOT).sources, root / "build/sources")
        graph, recipes = load_graph(root, sources_url(root / "build/sources"))
        paths = {r.name: str(r.path) for r in recipes}
        order = graph.order

        # bare rattler-build, one process, the recipes in topological order
        bare_out = tmp / "bare"
        ch.index(bare_out)
        result = tmp / "bare.json"
        spec = {
            "recipes": [[n, paths[n]] for n in order],
            "output_dir": str(bare_out),
            "channels": [bare_out.as_uri(), seed.as_uri()],
            "result": str(result),
        }
        env = {**os.environ, "DXFORGE_SOURCES": sources_url(root / "build/sources")}
        print(f"bare rattler-build of {len(order)} recipes ...", file=sys.stderr)
        with open(tmp / "bare.log", "w") as log:
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", BARE, json.dumps(spec)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
            bare_wall = time.perf_counter() - t
        if proc.returncode != 0 or not result.exists():
            sys.exit(f"bare rattler-build failed ({proc.returncode}); see {tmp / 'bare.log'}")
        bare = json.loads(result.read_text())
        bare_sum = sum(bare.values())

        build = [DXFORGE, "build", "--root", str(root), "--channel", str(seed), "--json"]
        print("dxforge build --force --jobs 1 ...", file=sys.stderr)
        full_s, proc = run([*build, "--force", "--jobs", "1"], cwd=root)
        full = json.loads(proc.stdout)
        assert all(p["status"] == "built" for p in full["packages"]), full
        print("dxforge build --force --jobs 2 (another output channel) ...", file=sys.stderr)
        par_s, proc = run([*build, "--force", "--jobs", "2", "--out", str(tmp / "par")], cwd=root)
        assert all(p["status"] == "built" for p in json.loads(proc.stdout)["packages"])
        print("dxforge build (no-op) ...", file=sys.stderr)
        noop_s, proc = run(build, cwd=root)
        noop = json.loads(proc.stdout)
        assert all(p["status"] == "skipped" for p in noop["packages"]), noop
    finally:
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    per = {p["name"]: p["seconds"] for p in full["packages"]}
    print(f"{'package':<16}{'bare s':>9}{'dxforge s':>11}")
    for n in order:
        print(f"{n:<16}{bare[n]:>9.1f}{per[n]:>11.1f}")
    print(f"{'sum':<16}{bare_sum:>9.1f}{sum(per.values()):>11.1f}")
    print()
    print(f"{'run':<44}{'seconds':>9}")
    print(f"{'bare rattler-build, sum of the 9 builds':<44}{bare_sum:>9.2f}")
    print(f"{'bare rattler-build, whole process':<44}{bare_wall:>9.2f}")
    print(f"{'dxforge build --force --jobs 1 (wall)':<44}{full_s:>9.2f}")
    print(f"{'dxforge build --force --jobs 2 (wall)':<44}{par_s:>9.2f}")
    print(f"{'dxforge build, nothing changed (wall)':<44}{noop_s:>9.2f}")
    print()
    print(f"full dxforge build / sum of bare builds:  {full_s / bare_sum:.3f}")
    print(f"full dxforge build / bare process wall:   {full_s / bare_wall:.3f}")
    print(f"--jobs 2 / --jobs 1:                      {par_s / full_s:.3f}")
    print(f"no-op rebuild / full dxforge build:       {noop_s / full_s:.4f}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # py-rattler may abort at exit after async calls
