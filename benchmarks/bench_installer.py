"""The installer, side by side in one run: our installer (payload codecs and .pyc strategies)
against conda-pack of the same records and against plain ``gzip -dc | tar -x`` and
``zstd -dc | tar -x`` of the same installed tree.

Prints, for each: size, build seconds, pilot install seconds (as a pilot: unprivileged,
offline, read-only HOME), first and second ``dirac --help`` on the read-only prefix; and the
ratios the installer is held to. Each timing is the best of --repeat runs.

usage: .venv/bin/python benchmarks/bench_installer.py [--repeat N] [--quick]
Needs build/channels/{dxforge,seed} (scripts/run-main.sh makes them); works in a temporary
directory and leaves the project's build/ as it was.
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "src"))

from dxforge.isolate import Site  # noqa: E402

VARIANTS = [  # (name, dxforge installer options)
    ("zstd, imported .pyc (default)", ["--compression", "zstd", "--pyc", "imported"]),
    ("zstd, all .pyc unchecked-hash", ["--compression", "zstd", "--pyc", "unchecked-hash"]),
    ("zstd, all .pyc timestamp", ["--compression", "zstd", "--pyc", "timestamp"]),
    ("zstd, .pyc compiled at install", ["--compression", "zstd", "--pyc", "install"]),
    ("gzip, imported .pyc", ["--compression", "gzip", "--pyc", "imported"]),
    ("xz, imported .pyc", ["--compression", "xz", "--pyc", "imported"]),
]
CODECS = [  # (name, compress, decompress) of the installed tree's tar
    ("gzip -6", "gzip -6", "gzip -dc"),
    ("gzip -9", "gzip -9", "gzip -dc"),
    ("zstd -10 --long=27 -T2", "zstd -q -10 --long=27 -T2", "zstd -dcq --long=27"),
    ("zstd -15 --long=27 -T2", "zstd -q -15 --long=27 -T2", "zstd -dcq --long=27"),
    ("zstd -19 --long=27 -T2", "zstd -q -19 --long=27 -T2", "zstd -dcq --long=27"),
    ("zstd -19 -T1", "zstd -q -19 -T1", "zstd -dcq"),
    ("xz -6 -T2", "xz -6 -T2", "xz -dc"),
    ("xz -9 -T2", "xz -9 -T2", "xz -dc"),
]


@dataclass
class Row:
    name: str
    size: int = 0
    build: float = 0.0
    install: float = 0.0
    first: float = 0.0
    second: float = 0.0
    notes: list[str] = field(default_factory=list)


def best(fn, repeat: int) -> float:
    out = float("inf")
    for _ in range(repeat):
        out = min(out, fn())
    return out


def sh(cmd: str, **kw) -> float:
    t = time.perf_counter()
    subprocess.run(["sh", "-c", cmd], check=True, capture_output=True, **kw)
    return time.perf_counter() - t


def read_only(path: Path) -> None:
    subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)


def dirac_help(site: Site, prefix: Path) -> float:
    t = time.perf_counter()
    site.run([prefix / "bin/dirac", "--help"], env=site.env(path=f"{prefix}/bin:/usr/bin:/bin"),
             check=True, what="dirac --help")
    return time.perf_counter() - t


def bench_installer(installer: Path, repeat: int) -> tuple[float, float, float]:
    """Install as a pilot (best of N), then the first and second ``dirac --help`` on the
    prefix made read-only."""
    times = []
    for _ in range(repeat):
        with Site(prefix="dxforge-bench-") as site:
            copy = site.root / installer.name
            shutil.copy2(installer, copy)
            copy.chmod(0o644)
            prefix = site.work / "diracos"
            t = time.perf_counter()
            site.run(["sh", copy, "-b", "-p", prefix], check=True, what="the installer")
            install = time.perf_counter() - t
            read_only(prefix)
            times.append((install, dirac_help(site, prefix), dirac_help(site, prefix)))
    return min(t[0] for t in times), min(t[1] for t in times), min(t[2] for t in times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the default variant and gzip only")
    args = ap.parse_args()
    channels = [ROOT / "build/channels/dxforge", ROOT / "build/channels/seed"]
    if not all((c / "noarch/repodata.json").is_file() for c in channels):
        print("no build/channels/{dxforge,seed}: run scripts/run-main.sh first", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dxforge-bench-"))
    work.chmod(0o755)
    rows: list[Row] = []
    variants = VARIANTS[:1] + VARIANTS[4:5] if args.quick else VARIANTS
    try:
        packages_size = 0
        default: Path | None = None
        for name, opts in variants:
            out = work / f"v{len(rows)}"
            t = time.perf_counter()
            res = subprocess.run([str(BIN / "dxforge"), "installer", "--out", str(out), "--json",
                                  *opts], capture_output=True, text=True, cwd=ROOT)
            if res.returncode != 0:
                print(f"{name}: the build failed:\n{res.stdout}{res.stderr}", file=sys.stderr)
                return 1
            data = json.loads(res.stdout)
            row = Row(name, data["size"], time.perf_counter() - t)
            packages_size = data["packages_size"]
            installer = Path(data["installer"])
            row.install, row.first, row.second = bench_installer(installer, args.repeat)
            rows.append(row)
            default = default or installer
            print(f"  {name}: {row.size / (1 << 20):.1f} MiB, build {row.build:.1f} s, install "
                  f"{row.install:.2f} s, dirac --help {row.first:.2f} s then {row.second:.2f} s",
                  file=sys.stderr, flush=True)
        assert default is not None
        with Site(prefix="dxforge-bench-tree-") as site:
            prefix = site.work / "diracos"
            site.run(["sh", default, "-b", "-p", prefix], check=True, what="the installer")
            tree = work / "tree.tar"
            subprocess.run(["tar", "-C", str(prefix), "-cf", str(tree), "."], check=True)
            # conda-pack of the same records: pack, then what a site does with the tar.gz
            packed = work / "conda-pack.tar.gz"
            t = time.perf_counter()
            subprocess.run([str(BIN / "conda-pack"), "-p", str(prefix), "-o", str(packed), "-q",
                            "--n-threads", "2"], check=True, capture_output=True)
            cp = Row("conda-pack (tar -xzf + conda-unpack)", packed.stat().st_size,
                     time.perf_counter() - t)
            packed.chmod(0o644)
            cp_times = []
            for _ in range(args.repeat):
                dest = site.work / "unpacked"
                site.run(["rm", "-rf", dest], check=True)
                site.run(["mkdir", dest], check=True)
                t = time.perf_counter()
                site.run(["tar", "-xzf", packed, "-C", dest], check=True, what="tar -xzf")
                site.run([dest / "bin/python", dest / "bin/conda-unpack"], check=True,
                         env=site.env(path=f"{dest}/bin:/usr/bin:/bin"), what="conda-unpack")
                unpack = time.perf_counter() - t
                site.run(["chmod", "-R", "a-w", dest], check=True)
                cp_times.append((unpack, dirac_help(site, dest), dirac_help(site, dest)))
                site.run(["chmod", "-R", "u+w", dest], check=True)
            cp.install, cp.first, cp.second = (min(t[i] for t in cp_times) for i in range(3))
            rows.append(cp)
        codec_rows = []
        for name, comp, decomp in CODECS:
            if args.quick and not name.startswith(("gzip -6", "zstd -19 --long")):
                continue
            blob = work / "tree.c"
            t = time.perf_counter()
            sh(f"{comp} -c < {tree} > {blob}")
            row = Row(f"{decomp.split()[0]} -dc | tar -x ({name})", blob.stat().st_size,
                      time.perf_counter() - t)

            def unpack() -> float:
                dest = work / "x"
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir()
                return sh(f"{decomp} < {blob} | tar -C {dest} -xf -")

            row.install = best(unpack, args.repeat)
            codec_rows.append(row)
        rows += codec_rows
        mib = 1 << 20
        print(f"\n{'':44} {'size':>9} {'build':>7} {'install':>8} {'1st help':>9} "
              f"{'2nd help':>9}")
        for r in rows:
            help_ = f"{r.first:8.2f}s {r.second:8.2f}s" if r.first else ""
            print(f"{r.name:44} {r.size / mib:7.1f}Mi {r.build:6.1f}s {r.install:7.2f}s {help_}")
        ours = rows[0]
        gz = next(r for r in codec_rows if r.name.endswith("(gzip -6)"))
        zs = next(r for r in codec_rows if "zstd -19 --long" in r.name)
        print(f"\nsum of the installer's .conda files: {packages_size / mib:.1f} MiB")
        print(f"installer / .conda files:            {ours.size / packages_size:.2f} (goal <= 1.15)")
        print(f"installer / conda-pack tar.gz:       {ours.size / cp.size:.2f}")
        print(f"install / gzip -dc | tar -x:         {ours.install / gz.install:.2f} (goal <= 0.8)")
        print(f"install / zstd -dc | tar -x:         {ours.install / zs.install:.2f}")
        print(f"install + 1st help / conda-pack's:   "
              f"{(ours.install + ours.first) / (cp.install + cp.first):.2f} (goal < 1)")
        return 0
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
