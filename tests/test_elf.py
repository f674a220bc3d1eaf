"""ELF reading, the glibc floor, the staging lint and the runtime's library closure, on real
ELF files compiled here with gcc and a small Debian-shaped root (a dpkg database of its own)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dxforge.conda.elf import glibc_floor, in_glibc, lint, parse_version, read_elf, walk_elf
from dxforge.core.util import DxError
from dxforge.runtime.libs import closure, conda_name

pytestmark = pytest.mark.skipif(not shutil.which("gcc"), reason="gcc is not installed")


def cc(out: Path, source: str, *args: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-o", str(out), str(src), *args], check=True, capture_output=True)
    src.unlink()
    return out


LIB_B = "int b(void) { return 2; }\n"
LIB_A = "int b(void);\nint a(void) { return b() + 1; }\n"
MAIN = "int a(void);\nint main(void) { return a() == 3 ? 0 : 1; }\n"
STAT = (
    "#include <sys/stat.h>\n#include <stdio.h>\n"
    "int main(int c, char **v) { struct stat s; puts(v[0]); return stat(v[0], &s); }\n"
)


def libraries(d: Path, origin: bool = True) -> tuple[Path, Path]:
    """``libB.so.2`` and ``libA.so.1`` (which needs libB) in ``d``."""
    b = cc(d / "libB.so.2", LIB_B, "-shared", "-fPIC", "-Wl,-soname,libB.so.2")
    rpath = ["-Wl,-rpath,$ORIGIN", "-Wl,--enable-new-dtags"] if origin else []
    a = cc(
        d / "libA.so.1",
        LIB_A,
        "-shared",
        "-fPIC",
        "-Wl,-soname,libA.so.1",
        f"-L{d}",
        "-l:libB.so.2",
        *rpath,
    )
    return a, b


def test_read_elf_needed_soname_runpath(tmp_path: Path) -> None:
    a, b = libraries(tmp_path / "lib")
    info = read_elf(a)
    assert info is not None
    assert info.soname == "libA.so.1" and "libB.so.2" in info.needed
    assert info.runpath == ("$ORIGIN",) and info.search_dirs() == [tmp_path / "lib"]
    assert read_elf(tmp_path / "lib") is None
    (tmp_path / "text").write_text("#!/bin/sh\n")
    assert read_elf(tmp_path / "text") is None


def test_glibc_floor_names_the_file_that_needs_most(tmp_path: Path) -> None:
    plain = cc(tmp_path / "bin/plain", '#include <stdio.h>\nint main(void){puts("x");}\n')
    stat = cc(tmp_path / "bin/stat", STAT)
    floor = glibc_floor(walk_elf(tmp_path))
    expected = max(read_elf(plain).glibc, read_elf(stat).glibc)  # type: ignore[union-attr]
    assert floor.version == expected and floor.version >= (2, 2)
    assert floor.path in (plain, stat) and read_elf(floor.path).glibc == expected  # type: ignore[arg-type,union-attr]
    assert glibc_floor([]).text == ""
    assert parse_version("2.31") == (2, 31)
    with pytest.raises(DxError, match="dotted numbers"):
        parse_version("2.x")


def test_glibc_family() -> None:
    for s in (
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libresolv.so.2",
        "libutil.so.1",
        "libanl.so.1",
        "ld-linux-x86-64.so.2",
    ):
        assert in_glibc(s), s
    for s in ("libcrypt.so.1", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1", "libnsl.so.2"):
        assert not in_glibc(s), s


def test_lint_accepts_a_self_contained_prefix(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    libraries(prefix / "lib")
    cc(
        prefix / "bin/tool",
        MAIN,
        f"-L{prefix / 'lib'}",
        "-l:libA.so.1",
        "-Wl,-rpath,$ORIGIN/../lib",
        "-Wl,--enable-new-dtags",
    )
    report = lint(prefix)
    assert report.files == 3 and report.problems == []
    assert subprocess.run([prefix / "bin/tool"], check=False).returncode == 0


def test_lint_names_each_library_that_would_come_from_the_host(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    outside = tmp_path / "host-lib"
    libraries(outside)
    libraries(prefix / "lib", origin=False)  # libA without RUNPATH: libB would be looked up
    cc(prefix / "bin/no-runpath", MAIN, f"-L{outside}", "-l:libA.so.1")
    cc(
        prefix / "bin/outside",
        MAIN,
        f"-L{outside}",
        "-l:libA.so.1",
        f"-Wl,-rpath,{outside}",
        "-Wl,--enable-new-dtags",
    )
    problems = {(p.path, p.soname): p.why for p in lint(prefix).problems}
    assert set(problems) == {
        ("bin/no-runpath", "libA.so.1"),
        ("bin/outside", "libA.so.1"),
        ("lib/libA.so.1", "libB.so.2"),
    }
    assert "no RUNPATH" in problems[("bin/no-runpath", "libA.so.1")]
    assert "outside the prefix" in problems[("bin/outside", "libA.so.1")]
    assert "bin/outside needs libA.so.1" in str(lint(prefix).problems[1])


# ---- the closure, in a small Debian-shaped root ------------------------------------------------


def debian_root(tmp_path: Path, packages: dict[str, tuple[str, list[Path]]]) -> Path:
    """A root with a dpkg database: ``{binary: (source, files)}`` (files already in the root)."""
    root = tmp_path / "root"
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    stanzas = []
    for binary, (source, files) in packages.items():
        stanzas.append(
            f"Package: {binary}\nStatus: install ok installed\nPriority: optional\n"
            f"Section: libs\nArchitecture: amd64\nSource: {source}\nVersion: 1.2-3\n"
            f"Maintainer: x <x@localhost>\nDescription: {binary}\n"
        )
        listed = [
            "/.",
            *sorted({"/" + str(p.relative_to(root).parent) for p in files}),
            *("/" + str(p.relative_to(root)) for p in files),
        ]
        (info / f"{binary}.list").write_text("\n".join(listed) + "\n")
    (root / "var/lib/dpkg/status").write_text("\n".join(stanzas))
    return root


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="dpkg-query is not installed")
def test_closure_maps_sonames_to_debian_packages_to_conda_names(tmp_path: Path) -> None:
    libdir = tmp_path / "root/usr/lib/x86_64-linux-gnu"
    a, b = libraries(libdir)
    root = debian_root(tmp_path, {"libffi7": ("libffi", [a]), "libsqlite3-0": ("sqlite3", [b])})
    found = closure(root, {"libA.so.1", "libc.so.6"}, provided=set())
    assert set(found) == {"libffi", "libsqlite"}  # libB came in through libA's DT_NEEDED
    assert found["libffi"].files == ["/usr/lib/x86_64-linux-gnu/libA.so.1"]
    assert found["libsqlite"].sonames == {"libB.so.2"}
    assert found["libffi"].version == "1.2-3" and found["libffi"].debs[0].binary == "libffi7"
    assert closure(root, {"libA.so.1"}, provided={"libB.so.2"}).keys() == {"libffi"}


@pytest.mark.skipif(not shutil.which("dpkg-query"), reason="dpkg-query is not installed")
def test_closure_errors_name_the_library_and_the_fix(tmp_path: Path) -> None:
    a, b = libraries(tmp_path / "root/usr/lib/x86_64-linux-gnu")
    root = debian_root(tmp_path, {"libwidget1": ("widget", [a]), "libffi7": ("libffi", [b])})
    with pytest.raises(DxError) as e:
        closure(root, {"libA.so.1"}, set())
    msg = str(e.value)
    assert "libA.so.1 comes from Debian's libwidget1 (source widget)" in msg
    assert "debian_conda_names.yaml" in msg and "`widget: <conda-forge name>`" in msg
    with pytest.raises(DxError, match="libnothing.so.9 is needed but no package"):
        closure(root, {"libnothing.so.9"}, set())


def test_debian_to_conda_names() -> None:
    assert conda_name("libffi7", "libffi") == "libffi"
    assert conda_name("libsqlite3-0", "sqlite3") == "libsqlite"
    assert conda_name("libtinfo6", "ncurses") == conda_name("libncursesw6", "ncurses") == "ncurses"
    assert conda_name("libstdc++6", "gcc-10") == "libstdcxx"
    assert conda_name("libgcc-s1", "gcc-12") == "libgcc"
    assert conda_name("zlib1g", "zlib") == "libzlib"
    assert conda_name("liblzma5", "xz-utils") == "liblzma"


# ---- the glibc floor of the runtime's build: binding older symbol versions ---------------------

MATH = (
    "#include <math.h>\n#include <stdio.h>\n#include <stdlib.h>\n"
    'int main(int c, char **v) { double x = atof(c > 1 ? v[1] : "2");\n'
    '  printf("%.6f %.6f %.6f\\n", exp(x), log(x), pow(x, 0.5)); return 0; }\n'
)


def libc_dir() -> Path:
    for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64"):
        if (Path(d) / "libm.so.6").exists():
            return Path(d)
    pytest.skip("no glibc libm.so.6 in the usual places")


def test_the_floor_plan_binds_old_versions_and_lists_newer_functions() -> None:
    from dxforge.runtime.floor import plan

    p = plan(libc_dir(), (2, 28))
    # glibc 2.29 gave exp, log and pow new versions; the GLIBC_2.2.5 ones stay (x86_64)
    for sym in ("exp", "log", "pow"):
        assert p.bind[sym] == "GLIBC_2.2.5", p.bind
    assert "gettid" in p.missing and "sem_clockwait" in p.missing  # new in 2.30
    assert not any(s.startswith("totalorder") for s in p.bind)  # another ABI before 2.31
    assert not any(s.startswith("GLIBC_") for s in p.bind.keys() | set(p.missing))
    assert '__asm__(".symver exp,exp@GLIBC_2.2.5");' in p.header()
    assert "__ASSEMBLER__" in p.header()
    assert "ac_cv_func_gettid=no" in p.config_site().splitlines()
    assert plan(libc_dir(), (9, 99)).bind == {}  # nothing is newer than a future floor
    with pytest.raises(DxError, match="no C library here"):
        plan(Path("/nonexistent"), (2, 28))


def test_a_gcc_built_file_stays_at_the_floor_with_the_header(tmp_path: Path) -> None:
    """The same program needs exp@GLIBC_2.29 when built plainly (on glibc >= 2.29), and the
    GLIBC_2.2.5 versions when built with the floor header; and it still computes the same. (On a
    machine newer than glibc 2.33 the C runtime's own startup file still binds
    __libc_start_main@GLIBC_2.34: why the build root is Debian 11, glibc 2.31.)"""
    from dxforge.conda.elf import above_floor, needed_versions
    from dxforge.runtime.floor import plan

    p = plan(libc_dir(), (2, 28))
    header = tmp_path / "glibc-floor.h"
    header.write_text(p.header())
    plain = cc(tmp_path / "plain", MATH, "-lm")
    floored = cc(tmp_path / "floored", MATH, "-include", str(header), "-lm")
    if read_elf(plain).glibc < (2, 29):  # type: ignore[union-attr]
        pytest.skip("this machine's glibc is older than 2.29: nothing to bind")
    assert "exp@GLIBC_2.29" in above_floor(plain, (2, 28))
    startup = {"__libc_start_main@GLIBC_2.34"}
    assert set(above_floor(floored, (2, 28))) <= startup
    for sym in ("exp", "log", "pow"):
        assert (sym, "GLIBC_2.2.5") in needed_versions(floored)
    runs = [
        subprocess.run([str(f), "3"], capture_output=True, text=True, check=True).stdout
        for f in (plain, floored)
    ]
    assert runs[0] == runs[1] == "20.085537 1.098612 1.732051\n"
