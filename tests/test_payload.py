"""The payload's zstd frames: one per package, reused from the frame cache by content."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from backports import zstd

from dxforge.installer.payload import pack


def _tree(root: Path, version: str) -> dict[str, tuple[str, int]]:
    files = {
        "bin/python": ("python", b"\x7fELF" + b"p" * 200_000),
        "lib/libssl.so": ("openssl", b"\x7fELF" + bytes(range(256)) * 800),
        "lib/python3/site-packages/diracx/__init__.py": ("diracx", f"V = {version!r}\n".encode()),
        ".dxforge/manifest.json": ("", f'{{"v": "{version}"}}\n'.encode()),
    }
    owners = {}
    for rel, (pkg, data) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        if pkg:
            owners[rel] = (pkg, 1_700_000_000 + len(pkg))
    return owners


def _members(path: Path) -> dict[str, tuple[bytes, int]]:
    with tarfile.open(fileobj=io.BytesIO(zstd.decompress(path.read_bytes()))) as tar:
        return {
            m.name: (tar.extractfile(m).read() if m.isfile() else b"", m.mtime)  # type: ignore[union-attr]
            for m in tar.getmembers()
        }


def test_one_frame_per_package_and_reuse(tmp_path: Path) -> None:
    root, frames = tmp_path / "root", tmp_path / "frames"
    owners = _tree(root, "1.0")
    one = pack(
        root, tmp_path / "one.tar.zst", "zstd", epoch=1, level=3, owners=owners, frames=frames
    )
    # directories, diracx, openssl, python, what no package owns
    assert (one.frames_made, one.frames_reused) == (5, 0)
    got = _members(one.path)
    assert got["bin/python"] == ((root / "bin/python").read_bytes(), 1_700_000_006)
    assert got[".dxforge/manifest.json"][1] == 1
    assert one.members == len(got)

    again = pack(
        root, tmp_path / "again.tar.zst", "zstd", epoch=1, level=3, owners=owners, frames=frames
    )
    assert (again.frames_made, again.frames_reused) == (0, 5)
    assert again.sha256 == one.sha256

    _tree(root, "2.0")  # a release: diracx and the records change, python and openssl do not
    two = pack(
        root, tmp_path / "two.tar.zst", "zstd", epoch=1, level=3, owners=owners, frames=frames
    )
    assert (two.frames_made, two.frames_reused) == (2, 3)
    assert _members(two.path)["lib/python3/site-packages/diracx/__init__.py"][0] == b"V = '2.0'\n"


def test_a_damaged_kept_frame_is_compressed_again(tmp_path: Path) -> None:
    root, frames = tmp_path / "root", tmp_path / "frames"
    owners = _tree(root, "1.0")
    one = pack(root, tmp_path / "one.tar.zst", "zstd", level=3, owners=owners, frames=frames)
    for kept in frames.iterdir():
        kept.write_bytes(kept.read_bytes()[:-9] + b"damaged!!")
    two = pack(root, tmp_path / "two.tar.zst", "zstd", level=3, owners=owners, frames=frames)
    assert (two.frames_made, two.frames_reused) == (5, 0)
    assert two.sha256 == one.sha256


def test_gzip_and_zstd_hold_the_same_tar(tmp_path: Path) -> None:
    import gzip

    root = tmp_path / "root"
    owners = _tree(root, "1.0")
    z = pack(root, tmp_path / "p.tar.zst", "zstd", level=3, owners=owners)
    g = pack(root, tmp_path / "p.tar.gz", "gzip", level=1, owners=owners)
    assert zstd.decompress(z.path.read_bytes()) == gzip.decompress(g.path.read_bytes())
    assert z.tar_bytes == g.tar_bytes
