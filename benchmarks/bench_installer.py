"""Installer benchmark, ratios from one run:

- installer size vs the sum of its packages' .conda files;
- install wall time vs `<decompressor> -dc payload | tar -x` of the same payload (the physical
  limit) and vs rattler installing the same records from a warm package cache.

usage: .venv/bin/python benchmarks/bench_installer.py [--synthetic | --construct FILE]
                                                      [--compression gzip|xz|zstd] [--repeat N]
Uses construct.yaml with build/channels/{dxforge,seed} when both exist (else, or with
--synthetic, the small synthetic channel of the tests). Each timing is the best of N runs.
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
DECOMP = {"gzip": "gzip -dc", "xz": "xz -dc", "zstd": "zstd -dcq"}

RATTLER = """
import json, os, shutil, sys, time
from pathlib import Path
from dxforge import channel as ch
channels, specs, cache, prefix, repeat = json.loads(sys.argv[1])
records = ch.solve(channels, specs)
best = None
for _ in range(repeat):
    shutil.rmtree(prefix, ignore_errors=True)  # outside the timing
    t = time.perf_counter()
    ch.install(records, Path(prefix), cache_dir=Path(cache))
    dt = time.perf_counter() - t
    best = dt if best is None else min(best, dt)
print(json.dumps(best), flush=True)
os._exit(0)
"""


def timed(cmd: list[str], repeat: int, before=None, **kw) -> float:
    best = float("inf")
    for _ in range(repeat):
        if before:
            before()
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, **kw)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--construct", type=Path, help="a construct.yaml to build as it is")
    ap.add_argument("--compression", default="gzip", choices=sorted(DECOMP))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dxforge-bench-"))
    try:
        from dxforge.layout import Layout

        layout = Layout.of(ROOT)
        dx, seed = layout.channel, layout.seed
        real = not args.synthetic and all((c / "noarch/repodata.json").is_file()
                                          for c in (dx, seed))
        if args.construct:
            construct, extra, real = args.construct.resolve(), [], True
        elif real:
            construct, extra = ROOT / "construct.yaml", ["--channel", str(dx), "--channel",
                                                         str(seed)]
        else:
            sys.path.insert(0, str(ROOT / "tests"))
            from synth_channel import SYNTH_CONSTRUCT

            chan = work / "channel"
            subprocess.run([sys.executable, str(ROOT / "tests/synth_channel.py"), str(chan)],
                           check=True, capture_output=True)
            construct = work / "construct.yaml"
            construct.write_text(SYNTH_CONSTRUCT.format(
                channel=chan, post_install=ROOT / "installer/post_install.sh"))
            extra = []
        out = work / "out"
        t = time.perf_counter()
        res = subprocess.run([DXFORGE, "installer", str(construct), "--out", str(out), "--json",
                              "--compression", args.compression, *extra],
                             capture_output=True, text=True)
        build_s = time.perf_counter() - t
        if res.returncode != 0:
            print(res.stderr, file=sys.stderr)
            return 1
        info = json.loads(res.stdout)
        installer = Path(info["installer"])

        prefix = work / "inst" / "x"

        def clean() -> None:
            shutil.rmtree(prefix.parent, ignore_errors=True)
            prefix.parent.mkdir(parents=True)

        payload = work / "payload"
        header = info["size"] - info["payload_size"]
        with open(installer, "rb") as src, open(payload, "wb") as dst:
            src.seek(header)
            shutil.copyfileobj(src, dst)
        dest = work / "untar"

        def clean_untar() -> None:
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir()

        install_s = untar_s = float("inf")
        for _ in range(args.repeat):  # interleaved: both see the same machine load
            untar_s = min(untar_s, timed(
                ["sh", "-c", f"{DECOMP[args.compression]} {payload} | tar -xf -"], 1,
                clean_untar, cwd=dest))
            install_s = min(install_s, timed(["sh", str(installer), "-b", "-p", str(prefix)],
                                             1, clean))

        specs = [line.split("#")[0] for line in Path(info["lockfile"]).read_text().splitlines()
                 if "://" in line]
        names = [p["name"] + " ==" + p["version"] + " " + p["build"] for p in info["packages"]]
        rattler_arg = json.dumps([info["channels"], names, str(out / ".cache/pkgs"),
                                  str(work / "rattler-prefix"), args.repeat])
        r = subprocess.run([sys.executable, "-c", RATTLER, rattler_arg], capture_output=True,
                           text=True)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        rattler_s = json.loads(r.stdout)

        mib = 1024 * 1024
        print(f"channels: {', '.join(info['channels']) if real else 'synthetic'}; "
              f"{len(info['packages'])} packages ({len(specs)} in the lockfile); "
              f"compression {args.compression}; best of {args.repeat}")
        print(f"build: {build_s:.1f} s; installed size {info['installed_bytes'] / mib:.1f} MiB; "
              f"relocated files {info['relocated_files']}")
        size, conda = info["size"], info["packages_size"]
        print(f"installer size   {size / mib:8.2f} MiB  vs .conda sum {conda / mib:8.2f} MiB  "
              f"ratio {size / conda:.2f}")
        print(f"install time     {install_s:8.3f} s    vs decompress|tar  {untar_s:8.3f} s    "
              f"ratio {install_s / untar_s:.2f}")
        print(f"install time     {install_s:8.3f} s    vs rattler (warm)  {rattler_s:8.3f} s    "
              f"ratio {install_s / rattler_s:.2f}")
        return 0
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)
