"""Unit tests of the one store of cached results, link-or-copy and the channel check."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from dxforge.conda import channel as ch
from dxforge.core.store import DIGESTS, Store, fingerprint, link_or_copy, link_tree
from dxforge.core.util import DxError


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_fingerprint_is_the_sha256_of_canonical_json() -> None:
    data = {"b": [1, 2], "a": {"y": 1, "x": Path("/p")}}
    again = {"a": {"x": Path("/p"), "y": 1}, "b": [1, 2]}
    assert fingerprint(data) == fingerprint(again)
    # the formula the six key functions used: cache keys made before stay the same
    assert (
        fingerprint(data)
        == hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    )
    assert fingerprint([1, "x"]) == hashlib.sha256(json.dumps([1, "x"]).encode()).hexdigest()
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def fill_with(files: dict[str, bytes], meta: dict | None = None, exe: tuple[str, ...] = ()):
    def fill(tmp: Path) -> dict:
        for rel, data in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
            os.chmod(tmp / rel, 0o700 if rel in exe else 0o600)
        return dict(meta or {})

    return fill


def test_put_then_get_with_digests_modes_and_key(tmp_path: Path) -> None:
    store = Store(tmp_path / "cache" / "things", "thing.json")
    os.umask(0o077)  # a private umask: what the store writes is still readable by others
    try:
        entry = store.put(
            "k1",
            fill_with({"sub/a.bin": b"a", "run": b"#!/bin/sh\n"}, {"version": "1"}, exe=("run",)),
            key="K1",
        )
    finally:
        os.umask(0o022)
    assert entry.path == tmp_path / "cache/things/k1"
    assert entry.meta["version"] == "1" and entry.meta["key"] == "K1"
    assert entry.meta[DIGESTS] == {
        "sub/a.bin": hashlib.sha256(b"a").hexdigest(),
        "run": hashlib.sha256(b"#!/bin/sh\n").hexdigest(),
    }
    assert mode(entry.path) == mode(entry.path / "sub") == 0o755
    assert mode(entry.path / "sub/a.bin") == mode(entry.path / "thing.json") == 0o644
    assert mode(entry.path / "run") == 0o755
    got = store.get("k1", key="K1")
    assert got is not None and got.meta == entry.meta and got.file("sub/a.bin").read_bytes() == b"a"
    assert store.get("k1", key="another") is None
    assert store.get("absent") is None
    assert sorted(p.name for p in store.root.iterdir()) == ["k1"]  # no temporary left


def test_a_damaged_or_missing_file_is_not_found(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put("e", fill_with({"f": b"good", "g": b"other"}))
    (tmp_path / "e/f").write_bytes(b"evil")
    assert store.get("e") is None
    store.put("e", fill_with({"f": b"good", "g": b"other"}))  # replaces the damaged entry
    assert store.get("e") is not None
    (tmp_path / "e/g").unlink()
    assert store.get("e") is None
    (tmp_path / "e/entry.json").write_text("{not json")
    assert store.get("e") is None


def test_entries_from_before_the_store_only_when_legacy(tmp_path: Path) -> None:
    """Same layout, no sha256 in the manifest: read as before only where allowed, never taken
    for a checked entry."""
    (tmp_path / "old").mkdir()
    (tmp_path / "old/component.json").write_text('{"files": ["x"]}')
    assert Store(tmp_path, "component.json").get("old") is None
    got = Store(tmp_path, "component.json", legacy=True).get("old")
    assert got is not None and got.meta == {"files": ["x"]}


def test_a_failed_fill_leaves_nothing_and_keeps_the_old_entry(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.put("e", fill_with({"f": b"one"}))

    def broken(tmp: Path) -> dict:
        (tmp / "f").write_bytes(b"half")
        raise DxError("the build broke")

    with pytest.raises(DxError, match="the build broke"):
        store.put("e", broken)
    got = store.get("e")
    assert got is not None and got.file("f").read_bytes() == b"one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]


def test_concurrent_puts_of_one_entry_leave_one_whole_entry(tmp_path: Path) -> None:
    store = Store(tmp_path)
    errors: list[BaseException] = []

    def put(i: int) -> None:
        try:
            for _ in range(5):
                store.put("e", fill_with({f"d{j}/f": b"same" for j in range(20)}, {"n": i}))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=put, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.get("e") is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e"]


def test_put_file_is_atomic_and_readable(tmp_path: Path) -> None:
    store = Store(tmp_path / "roots")
    seen: list[Path] = []

    def fill(p: Path) -> None:
        assert not p.exists()  # a tool writing a new file may refuse an existing one
        seen.append(p)
        p.write_bytes(b"tar")

    out = store.put_file("root.tar", fill)
    assert out.read_bytes() == b"tar" and mode(out) == 0o644
    assert seen[0].parent != store.root and seen[0].parent.name.startswith(".root.tar.new-")
    assert sorted(p.name for p in store.root.iterdir()) == ["root.tar"]


def test_link_or_copy_and_link_tree(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d/f").write_text("x")
    os.symlink("d/f", src / "l")
    os.symlink("d", src / "dl")
    dest = tmp_path / "out"
    assert link_tree(src, dest) == ["d/f", "dl", "l"]
    assert (dest / "d/f").stat().st_ino == (src / "d/f").stat().st_ino  # a hard link
    assert os.readlink(dest / "l") == "d/f" and os.readlink(dest / "dl") == "d"
    one = link_or_copy(src / "d/f", tmp_path / "new/deep/f")
    assert one.read_text() == "x"


def write_channel(root: Path, files: dict[str, bytes], listed: dict[str, bytes]) -> None:
    for sub in ch.SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    packages = {
        rel.split("/", 1)[1]: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
        for rel, d in listed.items()
    }
    (root / "noarch/repodata.json").write_text(json.dumps({"packages.conda": packages}))


def test_check_channel_names_the_package_and_the_fix(tmp_path: Path) -> None:
    write_channel(
        tmp_path,
        {"noarch/a-1-0.conda": b"aaa", "noarch/b-1-0.conda": b"bbb"},
        {"noarch/a-1-0.conda": b"aaa", "noarch/b-1-0.conda": b"bbX"},
    )
    records = ch.check_channel(tmp_path, ["noarch/a-1-0.conda"])
    assert set(records) == {"noarch/a-1-0.conda", "noarch/b-1-0.conda"}
    with pytest.raises(DxError, match=r"^where: noarch/b-1-0.conda has sha256 .*; rebuild it$"):
        ch.check_channel(tmp_path, label="where", fix="rebuild it")
    with pytest.raises(DxError, match="noarch/c-1-0.conda is not in the channel's repodata"):
        ch.check_channel(tmp_path, ["noarch/c-1-0.conda"])


def test_publish_channel_stages_indexes_checks_and_swaps(tmp_path: Path) -> None:
    """One package staged, indexed, checked and published; a second publish whose repodata
    does not match its package fails and leaves the published channel as it was."""
    from synth_channel import _assemble

    files = tmp_path / "files"
    (files / "share").mkdir(parents=True)
    (files / "share/hello.txt").write_text("hello\n")
    pkg = _assemble(tmp_path / "made", files, "hello", "1.0", "noarch")
    rel = f"noarch/{pkg.name}"
    out = tmp_path / "chan"

    def fill(new: Path) -> list[str]:
        link_or_copy(pkg, new / rel)
        return [rel]

    records = ch.publish_channel(out, fill)
    assert (
        out.is_symlink() and records[rel]["sha256"] == hashlib.sha256(pkg.read_bytes()).hexdigest()
    )
    assert ch.check_channel(out) == records
    before = (out / "noarch/repodata.json").read_text()

    def stale(new: Path) -> list[str]:
        link_tree(out.resolve(), new)
        (new / rel).unlink()
        (new / rel).write_bytes(b"not the package")
        return [rel]

    with pytest.raises(DxError, match=rf"^{out}: {rel} has \d+ bytes, .*; fix it$"):
        ch.publish_channel(out, stale, index_it=False, fix="fix it")
    assert (out / "noarch/repodata.json").read_text() == before
    assert (out / rel).read_bytes() == pkg.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".chan.new-")] == []
