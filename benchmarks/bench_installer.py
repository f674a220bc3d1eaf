"""The installer, side by side in one run: our installer (payload codecs and .pyc strategies)
against conda-pack of the same records and against plain ``gzip -dc | tar -x`` and
``zstd -dc | tar -x`` of the same installed tree.

Prints, for each: size, build seconds, pilot install seconds (as a pilot: unprivileged,
offline, read-only HOME), first and second ``dirac --help`` on the read-only prefix; and the
ratios the installer is held to. Each timing is the best of --repeat runs.

usage: .venv/bin/python benchmarks/bench_installer.py [--repeat N] [--quick] [--where DIR]
--where: the directory the installs go to (default: the system's temporary directory); on a
machine whose disk is shared and noisy, a tmpfs such as /dev/shm compares the CPU work alone.
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

from dxforge.isolation.isolate import Site  # noqa: E402

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


MIB = 1 << 20


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


def dirac_help(site: Site, prefix: Path) -> float:
    t = time.perf_counter()
    site.run(
        [prefix / "bin/dirac", "--help"],
        env=site.env(path=f"{prefix}/bin:/usr/bin:/bin"),
        check=True,
        what="dirac --help",
    )
    return time.perf_counter() - t


def timed(site: Site, argv: list, what: str, env: dict[str, str] | None = None) -> float:
    """One run in the site as its user, after flushing earlier runs' writes (each contender
    then starts from the same state of the disk)."""
    os.sync()
    t = time.perf_counter()
    site.run(argv, check=True, what=what, env=env)
    return time.perf_counter() - t


def fresh(site: Site, dest: Path) -> None:
    site.run(["chmod", "-R", "u+w", dest], check=False)
    site.run(["rm", "-rf", dest], check=True)


def head_to_head(
    site: Site, contenders: dict[str, list], repeat: int, helps: set[str]
) -> dict[str, tuple[float, float, float]]:
    """Each contender's install (best of ``repeat``, the contenders interleaved in each round,
    all as the site's user into the same directory), and for those in ``helps`` the first and
    second ``dirac --help`` on the prefix made read-only."""
    dest = site.work / "diracos"
    runs: dict[str, list[tuple[float, float, float]]] = {n: [] for n in contenders}
    for _ in range(repeat):
        for name, argv in contenders.items():
            fresh(site, dest)
            install = timed(site, ["sh", "-c", argv[0], "sh", dest, *argv[1:]], name)
            first = second = 0.0
            if name in helps:
                site.run(["chmod", "-R", "a-w", dest], check=True)
                first, second = dirac_help(site, dest), dirac_help(site, dest)
            runs[name].append((install, first, second))
    fresh(site, dest)
    return {n: tuple(min(r[i] for r in rs) for i in range(3)) for n, rs in runs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the default variant and gzip only")
    ap.add_argument("--where", type=Path, help="where the installs go (for instance /dev/shm)")
    args = ap.parse_args()
    channels = [ROOT / "build/channels/dxforge", ROOT / "build/channels/seed"]
    if not all((c / "noarch/repodata.json").is_file() for c in channels):
        print("no build/channels/{dxforge,seed}: run scripts/run-main.sh first", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dxforge-bench-"))
    work.chmod(0o755)
    variants = VARIANTS[:1] + VARIANTS[4:5] if args.quick else VARIANTS
    codecs = [c for c in CODECS if not args.quick or c[0] in ("gzip -6", "zstd -19 --long=27 -T2")]
    try:
        rows: dict[str, Row] = {}
        installers: dict[str, Path] = {}
        packages_size = 0
        for name, opts in variants:  # 1. each variant's build
            t = time.perf_counter()
            res = subprocess.run(
                [
                    str(BIN / "dxforge"),
                    "installer",
                    "--force",
                    "--out",
                    str(work / f"v{len(rows)}"),
                    "--json",
                    *opts,
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            if res.returncode != 0:
                print(f"{name}: the build failed:\n{res.stdout}{res.stderr}", file=sys.stderr)
                return 1
            data = json.loads(res.stdout)
            rows[name] = Row(name, data["size"], time.perf_counter() - t)
            packages_size = data["packages_size"]
            installers[name] = Path(data["installer"])
            print(
                f"  built {name}: {data['size'] / MIB:.1f} MiB in {rows[name].build:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        with Site(args.where, prefix="dxforge-bench-") as site:
            placed: dict[str, Path] = {}  # the variants' installers share a file name
            for i, (name, path) in enumerate(installers.items()):
                placed[name] = site.root / f"v{i}" / path.name
                placed[name].parent.mkdir()
                shutil.copy2(path, placed[name])
                placed[name].chmod(0o644)
                placed[name].parent.chmod(0o755)
            # 2. the installed tree of the default installer: conda-pack and the codecs' input
            tree_prefix = site.work / "tree"
            site.run(
                ["sh", placed[variants[0][0]], "-b", "-p", tree_prefix],
                check=True,
                what="the installer",
            )
            tree = work / "tree.tar"
            subprocess.run(["tar", "-C", str(tree_prefix), "-cf", str(tree), "."], check=True)
            packed = site.root / "conda-pack.tar.gz"
            t = time.perf_counter()
            subprocess.run(
                [
                    str(BIN / "conda-pack"),
                    "-p",
                    str(tree_prefix),
                    "-o",
                    str(packed),
                    "-q",
                    "--n-threads",
                    "2",
                ],
                check=True,
                capture_output=True,
            )
            cp = Row(
                "conda-pack (tar -xzf + conda-unpack)",
                packed.stat().st_size,
                time.perf_counter() - t,
            )
            packed.chmod(0o644)
            fresh(site, tree_prefix)
            for name, comp, _decomp in codecs:  # 3. the codecs on the same tree
                blob = site.root / f"tree.{len(rows)}"
                t = time.perf_counter()
                sh(f"{comp} -c < {tree} > {blob}")
                blob.chmod(0o644)
                rows[name] = Row(
                    f"{_decomp.split()[0]} -dc | tar -x ({name})",
                    blob.stat().st_size,
                    time.perf_counter() - t,
                )
                rows[name].notes.append(str(blob))
            rows[cp.name] = cp
            # 4. every install, interleaved, as the site's user into the same directory
            contenders: dict[str, list] = {
                n: ['sh "$2" -b -p "$1" > /dev/null', p] for n, p in placed.items()
            }
            contenders[cp.name] = [
                'mkdir "$1" && tar -xzf "$2" -C "$1" && "$1/bin/python" "$1/bin/conda-unpack"',
                packed,
            ]
            for name, _comp, decomp in codecs:
                contenders[name] = [
                    f'mkdir "$1" && {decomp} < "$2" | tar -C "$1" -xf -',
                    rows[name].notes[0],
                ]
            helps = set(installers) | {cp.name}
            for name, (install, first, second) in head_to_head(
                site, contenders, args.repeat, helps
            ).items():
                rows[name].install, rows[name].first, rows[name].second = install, first, second
        print(f"\n{'':44} {'size':>9} {'build':>7} {'install':>8} {'1st help':>9} {'2nd help':>9}")
        for r in rows.values():
            help_ = f"{r.first:8.2f}s {r.second:8.2f}s" if r.first else ""
            print(f"{r.name:44} {r.size / MIB:7.1f}Mi {r.build:6.1f}s {r.install:7.2f}s {help_}")
        ours = rows[variants[0][0]]
        gz, zs = rows["gzip -6"], rows["zstd -19 --long=27 -T2"]
        print(f"\nsum of the installer's .conda files: {packages_size / MIB:.1f} MiB")
        print(
            f"installer / .conda files:            {ours.size / packages_size:.2f} (goal <= 1.15)"
        )
        print(f"installer / conda-pack tar.gz:       {ours.size / cp.size:.2f}")
        print(f"install / gzip -dc | tar -x:         {ours.install / gz.install:.2f} (goal <= 0.8)")
        print(f"install / zstd -dc | tar -x:         {ours.install / zs.install:.2f}")
        print(
            f"install + 1st help / conda-pack's:   "
            f"{(ours.install + ours.first) / (cp.install + cp.first):.2f} (goal < 1)"
        )
        return 0
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
