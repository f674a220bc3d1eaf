"""Relocate an extracted DIRACOS payload to its install prefix.

Runs under the bundled python with -I (standard library only). Reads .dxforge/manifest.json:
its "prefix" is the prefix the files hold now (the build's staging prefix in a fresh payload;
rewritten after each relocation), its "files" every file that holds it:
- text files: the prefix is replaced; rattler's `#!/bin/sh` + `exec` shebangs become plain
  `#!PREFIX/bin/python3.X` shebangs when those fit in 127 bytes;
- binary files: each NUL-terminated string holding the prefix is rewritten and NUL-padded to
  its old length; a longer new prefix is refused (nothing is written then);
- .py files whose text changed get their .pyc rebuilt, in the manifest's "pyc" mode
  (timestamp, or unchecked-hash for "unchecked-hash" and "imported"); no .pyc is ever
  patched; in "install" mode (the payload has none) every .py under lib/ is compiled here;
- conda-meta records of changed files get their sha256_in_prefix and size_in_bytes updated.

usage: python -I relocate.py --root DIR --prefix PREFIX [--install]
  DIR is where the payload lies now (it may differ from PREFIX, which is where it will live);
  --install: this is the installer's run (the "install" pyc mode compiles then).
"""

import hashlib
import importlib.util
import json
import os
import py_compile
import re
import sys

SHEBANG_MAX = 127
EXEC_SHEBANG = re.compile(
    rb"\A#!/bin/sh\n'''exec' \"(?P<exe>[^\"\n]+)\"(?P<args>[^\n]*?) \"\$0\" \"\$@\" #'''\n"
)


GENERATED = ("unix_python_entry_point", "windows_python_entry_point_script")
"""conda-meta path types of files the installer of the package wrote (entry points)."""


class RelocationError(Exception):
    pass


def binary_replace(data, old, new):
    """Replace ``old`` by ``new`` inside NUL-terminated strings, keeping every length."""
    if len(new) > len(old):
        raise RelocationError("the new prefix is longer than the staging prefix")
    parts, pos = [], 0
    start = data.find(old)
    while start >= 0:
        end = data.find(b"\0", start)
        if end < 0:
            end = len(data)
        string = data[start:end]
        count = string.count(old)
        pad = b"\0" * ((len(old) - len(new)) * count)
        parts += [data[pos:start], string.replace(old, new), pad]
        pos = end
        start = data.find(old, pos)
    if not parts:
        return data
    out = b"".join(parts + [data[pos:]])
    if len(out) != len(data):
        raise RelocationError("binary replacement changed the file size")
    return out


def fix_shebang(data):
    """Turn rattler's long-prefix `exec` form into a plain shebang when it fits."""
    m = EXEC_SHEBANG.match(data)
    if not m:
        return data
    exe, args = m.group("exe"), m.group("args")
    if b" " in exe or len(args.split()) > 1:
        return data
    line = b"#!" + exe + args
    if len(line) > SHEBANG_MAX:
        return data
    return line + b"\n" + data[m.end() :]


def write_like(path, data, st):
    """Replace ``path`` by ``data`` keeping its mode and mtime."""
    tmp = path + ".dxforge-reloc"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, path)


MODES = {
    "timestamp": py_compile.PycInvalidationMode.TIMESTAMP,
    "unchecked-hash": py_compile.PycInvalidationMode.UNCHECKED_HASH,
    "imported": py_compile.PycInvalidationMode.UNCHECKED_HASH,
}


def recompile(path, final_path, mode):
    cfile = importlib.util.cache_from_source(path)
    if os.path.exists(cfile):
        py_compile.compile(
            path, cfile=cfile, dfile=final_path, doraise=True, invalidation_mode=MODES[mode]
        )
        return cfile
    return None


def compile_all(root, prefix):
    """Compile every .py under lib/ (the "install" mode), recording the final prefix."""
    import compileall

    for d in sorted(os.listdir(os.path.join(root, "lib"))):
        if d.startswith("python3"):
            compileall.compile_dir(
                os.path.join(root, "lib", d),
                quiet=2,
                workers=0,
                stripdir=root,
                prependdir=prefix,
                invalidation_mode=MODES["unchecked-hash"],
            )


def update_conda_meta(root, changed, shipped=None):
    """``changed``: {owner json name: {relative path: (sha256, size)}}; ``shipped`` (the
    manifest's sha256 of every shipped file) gets the records' new sha256."""
    for owner, files in sorted(changed.items()):
        path = os.path.join(root, "conda-meta", owner)
        if not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        for entry in record.get("paths_data", {}).get("paths", []):
            new = files.get(entry.get("_path"))
            if new:
                entry["sha256_in_prefix"], entry["size_in_bytes"] = new
                if entry.get("path_type") in GENERATED:  # no original in the package
                    entry["sha256"] = new[0]
        tmp = path + ".dxforge-reloc"
        text = (json.dumps(record, sort_keys=True) + "\n").encode()  # dumps: C-encoded
        with open(tmp, "wb") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        if shipped is not None:
            shipped["conda-meta/" + owner] = hashlib.sha256(text).hexdigest()


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def record_compiled(root, shipped):
    """The sha256 of every .pyc under lib/ into ``shipped`` (after compiling at install)."""
    for dirpath, _dirs, files in os.walk(os.path.join(root, "lib")):
        for name in files:
            if name.endswith(".pyc"):
                path = os.path.join(dirpath, name)
                shipped[os.path.relpath(path, root)] = _sha256(path)


def relocate_entry(root, prefix, e, old, new, mode, shipped):
    """Rewrite one manifest entry's file: (sha256, size) of its new content, or None when
    unchanged; ``shipped`` (when not None) gets the new sha256 of it and of its .pyc."""
    rel = e["path"]
    path = os.path.join(root, rel)
    if rel.endswith(".pyc") or not os.path.isfile(path) or os.path.islink(path):
        return None
    st = os.stat(path)
    with open(path, "rb") as f:
        data = f.read()
    if e["mode"] == "binary":
        out = binary_replace(data, old, new)
    else:
        out = fix_shebang(data.replace(old, new))
    if out == data:
        return None
    write_like(path, out, st)
    digest = hashlib.sha256(out).hexdigest()
    if shipped is not None:
        shipped[rel] = digest
    if rel.endswith(".py") and mode != "install":
        cfile = recompile(path, os.path.join(prefix, rel), mode)
        if cfile and shipped is not None:
            shipped[os.path.relpath(cfile, root)] = _sha256(cfile)
    return digest, len(out)


def relocate(root, prefix, install=False):
    meta = os.path.join(root, ".dxforge")
    with open(os.path.join(meta, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    old, new = manifest["prefix"].encode(), prefix.encode()
    entries = manifest["files"]
    mode = manifest.get("pyc", "timestamp")
    if any(e["mode"] == "binary" for e in entries) and len(new) > len(old):
        raise RelocationError(
            f"the prefix {prefix} is {len(new)} bytes long; this installer's binaries allow "
            f"at most {len(old)}: choose a shorter prefix"
        )
    changed = {}
    shipped = manifest.get("shipped")
    count = 0
    for e in entries:
        done = relocate_entry(root, prefix, e, old, new, mode, shipped)
        if done:
            count += 1
            if e.get("owner"):
                changed.setdefault(e["owner"], {})[e["path"]] = done
    update_conda_meta(root, changed, shipped)
    if mode == "install" and install:
        compile_all(root, prefix)
        if shipped is not None:
            record_compiled(root, shipped)
    manifest["prefix"] = prefix
    path = os.path.join(meta, "manifest.json")
    with open(path + ".dxforge-reloc", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(path + ".dxforge-reloc", path)
    return count


def main(argv):
    install = "--install" in argv
    argv = [a for a in argv if a != "--install"]
    args = dict(zip(argv[::2], argv[1::2], strict=False))
    if len(argv) != 4 or set(args) != {"--root", "--prefix"}:
        print(__doc__.strip().splitlines()[-3], file=sys.stderr)
        return 2
    try:
        count = relocate(args["--root"], args["--prefix"], install)
    except (RelocationError, OSError, ValueError, KeyError) as e:
        print(f"relocation failed: {e}", file=sys.stderr)
        return 1
    print(f"relocated {count} files to {args['--prefix']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
