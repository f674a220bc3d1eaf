"""The two routes to an aarch64 runtime, on a real component (OpenSSL, the runtime's first):

- cross: the Debian 11 (bullseye) build root with Debian's cross toolchain
  (gcc-aarch64-linux-gnu), compiling against an arm64 bullseye sysroot (libc6-dev and the
  component's -dev packages, an extract-variant root) with ``--sysroot``, ``-B`` and ``-L``;
- native: an arm64 bullseye root with gcc, run under the namespaced emulation
  (:mod:`dxforge.isolation.emulate`).

Per route: the seconds to make its root (0 when cached), to configure and build, the highest
GLIBC_ version the built ELF files need, their machine, and whether the cross-built
``openssl`` runs in an arm64 root (under emulation). Prints a table and writes JSON.

usage: nice -n 15 .venv/bin/python benchmarks/bench_aarch64_routes.py [--jobs 2] [--only ROUTE]
       [--component openssl|sqlite] [--json FILE] [--keep]
Needs the component's source in the user cache (``dxforge seed`` puts it there) and root.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dxforge.conda.elf import walk_elf
from dxforge.core.util import Ran, execute, user_cache
from dxforge.isolation import emulate, roots
from dxforge.isolation.isolate import NOBODY
from dxforge.runtime.cross import relativize

TRIPLET = "aarch64-linux-gnu"
T0 = 0.0
RELATIVIZE = True
SYSROOT_LIBS = (f"/sysroot/usr/lib/{TRIPLET}", f"/sysroot/lib/{TRIPLET}")
CROSS_CC = (
    "#!/bin/sh\n"
    f"exec {TRIPLET}-gcc --sysroot=/sysroot -B{SYSROOT_LIBS[0]}/ "
    + " ".join(f"-L{d}" for d in SYSROOT_LIBS)
    + ' "$@"\n'
)
TOOLS = ("tcl",)
"""What the builds need beyond a C compiler, make and perl (SQLite's tree makes its
amalgamation with tclsh): amd64 in the cross route's host root, arm64 in the native root; one
root per route serves every component."""
SOURCE = {"openssl": "openssl/*/openssl_*.orig.tar.gz", "sqlite": "sqlite3/*/sqlite3_*.orig.tar.xz"}
SAMPLE = 120
"""OpenSSL's full build is some 3000 compilations: too long under emulation on a shared
2-core machine. Both routes run Configure, generate the headers, then compile the same first
SAMPLE of libcrypto's shared-library objects (in name order); the ratio is the measure."""
BUILD = {
    "openssl": (
        "tar -xf /build/src.tar\ncd openssl-*/\n"
        "./Configure linux-aarch64 shared no-tests --prefix=/build/out "
        "--openssldir=/build/out/ssl --libdir=lib '-Wl,-rpath,\\$$ORIGIN/../lib' "
        "-Wl,--enable-new-dtags >/build/configure.log 2>&1\n"
        "echo configured-at $(date +%s)\n"
        'make -j"$JOBS" build_generated >/build/make.log 2>&1\n'
        "objs=$(grep -o '^crypto/[A-Za-z0-9_/]*libcrypto-shlib-[A-Za-z0-9_]*\\.o' Makefile "
        f"| sort -u | head -{SAMPLE})\n"
        'make -j"$JOBS" $objs >>/build/make.log 2>&1 || { tail -40 /build/make.log; exit 1; }\n'
        "echo objects $(echo $objs | wc -w)\n"
    ),
    "sqlite": (
        "tar -xf /build/src.tar\ncd sqlite3-*/\n"
        "./configure --prefix=/build/out --disable-static --disable-tcl --enable-threadsafe "
        "--enable-load-extension --enable-fts3 --enable-fts4 --enable-fts5 --enable-rtree "
        "$CONFIGURE_HOST CFLAGS='-O2 -DSQLITE_ENABLE_COLUMN_METADATA=1' "
        "LDFLAGS='-Wl,-rpath,\\$$ORIGIN/../lib -Wl,--enable-new-dtags' >/build/configure.log 2>&1 "
        "|| { tail -40 /build/configure.log; exit 1; }\n"
        "echo configured-at $(date +%s)\n"
        'make -j"$JOBS" libsqlite3.la >/build/make.log 2>&1 '
        "|| { tail -40 /build/make.log; exit 1; }\n"
        "make lib_install >/dev/null\n"
    ),
}
RUN = {
    "openssl": [],
    "sqlite": [
        "/usr/bin/python3",
        "-c",
        "import ctypes; "
        "l = ctypes.CDLL('/opt/out/lib/libsqlite3.so.0'); l.sqlite3_libversion.restype = "
        "ctypes.c_char_p; print('sqlite', l.sqlite3_libversion().decode())",
    ],
}
"""How the built files are run in an arm64 root (nothing to run for a sample of objects)."""


def timed(fn, *args, **kw):  # noqa: ANN001, ANN201 - a benchmark helper
    t = time.monotonic()
    out = fn(*args, **kw)
    return out, round(time.monotonic() - t, 1)


def cpu() -> float:
    """CPU seconds (user and system) of the finished child processes so far: on a shared
    machine the wall time depends on the others' load, this does not."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def build(cmd: list[str], timeout: float) -> tuple[Ran, float, float]:
    """Run a build: its result, wall seconds and CPU seconds."""
    global T0
    T0 = time.time()
    c0 = cpu()
    ran, seconds = timed(execute, cmd, check=False, timeout=timeout)
    return ran, seconds, round(cpu() - c0, 1)


def source(component: str) -> Path:
    found = sorted((user_cache() / "sources").glob(SOURCE[component]))
    if not found:
        sys.exit(f"no {component} source in {user_cache() / 'sources'}: run `dxforge seed` first")
    return found[-1]


def root(spec: roots.RootSpec, dest: Path) -> tuple[Path, float, bool]:
    cache = user_cache()
    cached = (cache / "roots").glob(f"{spec.name}-*.tar")
    warm = any(p.stem.endswith(spec.key(roots.mirror())) for p in cached)
    tar, seconds = timed(roots.tarball, spec, cache)
    return roots.extract(tar, dest), seconds, warm


def elf_facts(out: Path) -> dict[str, object]:
    from elftools.elf.elffile import ELFFile

    machines, glibc, files = set(), (), 0
    for info in walk_elf(out):
        files += 1
        glibc = max(glibc, info.glibc)
        with open(info.path, "rb") as f:
            machines.add(ELFFile(f)["e_machine"])
    return {
        "elf_files": files,
        "machines": sorted(machines),
        "glibc": "GLIBC_" + ".".join(map(str, glibc)) if glibc else "none",
    }


def cross(component: str, work: Path, jobs: int) -> dict[str, object]:
    host = roots.RootSpec("bullseye", "buildd", ("gcc-aarch64-linux-gnu", *TOOLS))
    base, t_host, warm_host = root(host, work / "host")
    sysroot, t_sys, warm_sys = root(
        emulate.root_spec("bullseye", "aarch64", ["libc6-dev"]), work / "sysroot"
    )
    relinked = relativize(sysroot) if RELATIVIZE else 0
    out = work / "build"
    out.mkdir()
    for point in ("build", "sysroot"):
        (base / point).mkdir()
    shutil.copy2(source(component), out / "src.tar")
    (out / "cc").write_text(CROSS_CC)
    (out / "cc").chmod(0o755)
    script = (
        f"export CC=/build/cc AR={TRIPLET}-ar RANLIB={TRIPLET}-ranlib "
        f"CONFIGURE_HOST='--host={TRIPLET} --build=x86_64-linux-gnu'\n" + BUILD[component]
    )
    (out / "build.sh").write_text("set -eu\ncd /build\n" + script)
    ran, seconds, cpu_s = build(
        roots.command(
            base,
            ["sh", "/build/build.sh"],
            env={"JOBS": str(jobs)},
            binds={"/build": out, "/sysroot": sysroot},
        ),
        7200,
    )
    facts = {
        "route": "cross",
        "root_seconds": t_host + t_sys,
        "roots_cached": warm_host and warm_sys,
        "relinked": relinked,
        "build_seconds": seconds,
        "cpu_seconds": cpu_s,
        "ok": ran.ok,
        "_t0": T0,
    }
    if not ran.ok:
        facts.pop("_t0")
        return {**facts, "error": ran.tail(15)}
    return _built(facts, ran, out / "out", component, work / "probe")


def _built(facts: dict, ran: Ran, out: Path, component: str, probe: Path) -> dict:
    """Add what the build printed (configure's end, the objects compiled), the ELF facts and
    whether it runs."""
    for line in ran.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "objects":
            facts["objects"] = int(value)
        elif key == "configured-at":
            facts["configure_seconds"] = round(float(value) - facts.pop("_t0"), 1)
    facts.pop("_t0", None)
    if out.is_dir():
        facts.update(elf_facts(out))
    if RUN[component]:
        facts["runs_in_arm64_root"] = runs(out, component, probe)
    return facts


def native(component: str, work: Path, jobs: int) -> dict[str, object]:
    spec = emulate.root_spec(
        "bullseye", "aarch64", ["gcc", "libc6-dev", "make", "perl", "libtool", "xz-utils", *TOOLS]
    )
    base, t_root, warm = root(spec, work / "native")
    qemu = emulate.qemu("aarch64", user_cache())
    out = base / "build"
    out.mkdir()
    shutil.copy2(source(component), out / "src.tar")
    (out / "build.sh").write_text(
        "set -eu\ncd /build\nexport CC=gcc CONFIGURE_HOST=\n" + BUILD[component]
    )
    ran, seconds, cpu_s = build(
        emulate.command(
            base,
            ["sh", "/build/build.sh"],
            machine="aarch64",
            interpreter=qemu,
            env={"JOBS": str(jobs)},
        ),
        14400,
    )
    facts = {
        "route": "native (emulated)",
        "root_seconds": t_root,
        "roots_cached": warm,
        "build_seconds": seconds,
        "cpu_seconds": cpu_s,
        "ok": ran.ok,
        "_t0": T0,
    }
    if not ran.ok:
        facts.pop("_t0")
        return {**facts, "error": ran.tail(15)}
    return _built(facts, ran, out / "out", component, work / "probe")


def runs(out: Path, component: str, dest: Path) -> str:
    """Run the built program in an arm64 bookworm root under emulation, as the pilot's user."""
    base, _, _ = root(emulate.root_spec("bookworm", "aarch64", ["python3"]), dest)
    shutil.copytree(out, base / "opt/out", symlinks=True)
    ran = execute(
        emulate.command(
            base,
            RUN[component],
            machine="aarch64",
            interpreter=emulate.qemu("aarch64", user_cache()),
            user=NOBODY,
        ),
        check=False,
        timeout=600,
    )
    shutil.rmtree(base, ignore_errors=True)
    return ran.stdout.strip() if ran.ok else f"fails: {ran.tail(3)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", choices=["cross", "native"])
    ap.add_argument("--component", choices=sorted(BUILD), default="openssl")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument(
        "--absolute-links",
        action="store_true",
        help="leave the sysroot's absolute symlinks (shows the trap)",
    )
    args = ap.parse_args()
    global RELATIVIZE
    RELATIVIZE = not args.absolute_links
    why = emulate.why_not()
    if why:
        sys.exit(f"cannot run: {why}")
    work = Path(tempfile.mkdtemp(prefix="bench-aarch64-", dir=user_cache() / "work"))
    results = []
    try:
        for name, fn in (("cross", cross), ("native", native)):
            if args.only in (None, name):
                (work / name).mkdir()
                results.append(
                    {"component": args.component, **fn(args.component, work / name, args.jobs)}
                )
                print(json.dumps(results[-1]), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n{'route':<20} {'root s':>7} {'build s':>8} {'cpu s':>7} {'ELF':>4}  glibc")
    for r in results:
        print(
            f"{r['route']:<20} {r['root_seconds']:>7} {r['build_seconds']:>8} "
            f"{r['cpu_seconds']:>7} "
            f"{r.get('elf_files', '-'):>4}  {r.get('glibc', r.get('error', ''))}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
