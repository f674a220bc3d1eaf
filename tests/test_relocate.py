"""Unit tests of the installer's relocation (dxforge/installer/files/relocate.py,
run by the bundled python)."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
from pathlib import Path

import pytest

from dxforge.installer import shipped

spec = importlib.util.spec_from_file_location("relocate", shipped("relocate.py"))
relocate = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(relocate)  # type: ignore[union-attr]

OLD = b"/opt/staging/" + b"_pad" * 20


def reference(data: bytes, old: bytes, new: bytes) -> bytes:
    """The obvious definition: each NUL-terminated string holding ``old`` gets ``new`` and is
    NUL-padded back to its length."""

    def sub(m: re.Match[bytes]) -> bytes:
        n = m.group().count(old)
        return m.group().replace(old, new) + b"\0" * ((len(old) - len(new)) * n)

    return re.compile(re.escape(old) + rb"[^\0]*?\0").sub(sub, data)


@pytest.mark.parametrize("seed", range(20))
def test_binary_replace_matches_the_definition(seed: int) -> None:
    rng = random.Random(seed)
    chunks = []
    for _ in range(rng.randint(0, 12)):
        chunks.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))))
        chunks.append(rng.choice([OLD, OLD + b"/lib\0", OLD + b":" + OLD + b"/x\0", b"\0"]))
    data = b"".join(chunks) + b"\0"
    new = b"/home/pilot/diracos"
    out = relocate.binary_replace(data, OLD, new)
    assert out == reference(data, OLD, new) and len(out) == len(data)


def test_binary_replace_keeps_offsets_and_refuses_a_longer_prefix() -> None:
    data = b"\x7fELF" + OLD + b"/lib:" + OLD + b"/x\0tail\0" + OLD + b"\0"
    out = relocate.binary_replace(data, OLD, b"/p")
    assert out.startswith(b"\x7fELF/p/lib:/p/x\0")
    assert out.endswith(b"/p\0" + b"\0" * (len(OLD) - 2))
    assert out.index(b"tail") == data.index(b"tail")
    assert relocate.binary_replace(b"no prefix here\0", OLD, b"/p") == b"no prefix here\0"
    with pytest.raises(relocate.RelocationError, match="longer"):
        relocate.binary_replace(data, OLD, OLD + b"x")


def test_relocate_rewrites_files_and_their_records(tmp_path: Path) -> None:
    """Text and binary files move to the new prefix; conda-meta's sha256_in_prefix and size
    follow, the manifest records the new prefix, and a second relocation works from it."""
    root = tmp_path / "payload"
    (root / "bin").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "conda-meta").mkdir()
    (root / ".dxforge").mkdir()
    old = "/opt/staging/" + "_pad" * 20
    (root / "bin/tool").write_text(f"#!{old}/bin/python3\nprint('{old}')\n")
    (root / "lib/libx.so").write_bytes(b"\x7fELF\0" + old.encode() + b"/share\0end")
    os.utime(root / "lib/libx.so", ns=(1, 1_700_000_000_000_000_000))
    record = {
        "name": "x",
        "paths_data": {
            "paths": [
                {"_path": "bin/tool", "sha256_in_prefix": "a", "size_in_bytes": 1},
                {"_path": "lib/libx.so", "sha256_in_prefix": "b", "size_in_bytes": 2},
            ]
        },
    }
    (root / "conda-meta/x-1-0.json").write_text(json.dumps(record))
    (root / ".dxforge/manifest.json").write_text(
        json.dumps(
            {
                "prefix": old,
                "pyc": "imported",
                "files": [
                    {"path": "bin/tool", "mode": "text", "owner": "x-1-0.json"},
                    {"path": "lib/libx.so", "mode": "binary", "owner": "x-1-0.json"},
                ],
            }
        )
    )
    assert relocate.relocate(str(root), "/srv/dx") == 2
    assert (root / "bin/tool").read_text() == "#!/srv/dx/bin/python3\nprint('/srv/dx')\n"
    lib = (root / "lib/libx.so").read_bytes()
    assert lib.startswith(b"\x7fELF\0/srv/dx/share\0") and lib.endswith(b"\0end")
    assert (root / "lib/libx.so").stat().st_mtime_ns == 1_700_000_000_000_000_000
    import hashlib

    paths = {
        p["_path"]: p
        for p in json.loads((root / "conda-meta/x-1-0.json").read_text())["paths_data"]["paths"]
    }
    for rel in ("bin/tool", "lib/libx.so"):
        data = (root / rel).read_bytes()
        assert paths[rel]["sha256_in_prefix"] == hashlib.sha256(data).hexdigest()
        assert paths[rel]["size_in_bytes"] == len(data)
    assert json.loads((root / ".dxforge/manifest.json").read_text())["prefix"] == "/srv/dx"
    assert relocate.relocate(str(root), "/srv/d2") == 2
    assert (root / "bin/tool").read_text().startswith("#!/srv/d2/bin/python3\n")
    with pytest.raises(relocate.RelocationError, match="at most"):
        relocate.relocate(str(root), "/x" * 100)
