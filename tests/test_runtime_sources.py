"""Upstream release archives pinned by URL and sha256 (dxforge.runtime.sources): taken from the
URL (a server on 127.0.0.1 here), else from the source mirror directory, checked either way; and
the project's own pins."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_index import serve_directory

from dxforge.core.util import DxError
from dxforge.isolation.apt import Apt, Mirror
from dxforge.runtime.components import components
from dxforge.runtime.sources import MIRROR_ENV, Pin, mirror_dir, obtain

DATA = b"voms-like release archive\n" * 100
SHA = hashlib.sha256(DATA).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "v2.1.0.tar.gz").write_bytes(DATA)
    (root / "other.tar.gz").write_bytes(b"not the release\n")

    with serve_directory(root) as url:
        yield url


def closed_port() -> str:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


def test_from_the_url(server: str, tmp_path: Path) -> None:
    pin = Pin(f"{server}/v2.1.0.tar.gz", SHA, "voms-2.1.0.tar.gz")
    got = obtain(pin, tmp_path / "cache", mirror=tmp_path / "empty-mirror")
    assert got.name == "voms-2.1.0.tar.gz" and got.read_bytes() == DATA
    assert obtain(pin, tmp_path / "cache", mirror=None) == got  # cached: no network needed


def test_from_the_mirror_when_the_url_cannot_be_reached(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "voms-2.1.0.tar.gz").write_bytes(DATA)
    pin = Pin(f"{closed_port()}/v2.1.0.tar.gz", SHA, "voms-2.1.0.tar.gz")
    assert obtain(pin, tmp_path / "cache", mirror=mirror).read_bytes() == DATA


def test_a_url_with_other_bytes_falls_back_to_the_mirror(server: str, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "voms-2.1.0.tar.gz").write_bytes(DATA)
    pin = Pin(f"{server}/other.tar.gz", SHA, "voms-2.1.0.tar.gz")
    assert obtain(pin, tmp_path / "cache", mirror=mirror).read_bytes() == DATA


def test_missing_everywhere_names_url_sha256_and_mirror(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    url = f"{closed_port()}/v2.1.0.tar.gz"
    with pytest.raises(DxError) as e:
        obtain(Pin(url, SHA, "voms-2.1.0.tar.gz"), tmp_path / "cache", mirror=mirror)
    msg = str(e.value)
    assert url in msg and SHA in msg and str(mirror / "voms-2.1.0.tar.gz") in msg
    assert "no such file" in msg and MIRROR_ENV in msg
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))  # nothing half-written is kept


def test_a_mirror_file_with_the_wrong_sha256_is_refused(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "voms-2.1.0.tar.gz").write_bytes(b"tampered\n")
    bad = hashlib.sha256(b"tampered\n").hexdigest()
    with pytest.raises(DxError) as e:
        obtain(
            Pin(f"{closed_port()}/x", SHA, "voms-2.1.0.tar.gz"), tmp_path / "cache", mirror=mirror
        )
    assert f"sha256 {bad}" in str(e.value) and SHA in str(e.value)
    assert not list((tmp_path / "cache").rglob("*.tar.gz"))


def test_without_a_mirror_the_error_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)  # the run scripts set it on our machines
    with pytest.raises(DxError, match=f"set {MIRROR_ENV} to one"):
        obtain(Pin(f"{closed_port()}/x", SHA, "x.tar.gz"), tmp_path / "cache", mirror=None)


def test_the_mirror_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    assert mirror_dir() == tmp_path
    monkeypatch.setenv(MIRROR_ENV, "")
    assert mirror_dir() is None


def test_the_project_pins_its_upstream_archives() -> None:
    pinned = [c for c in components("3.13") if c.pin is not None]
    assert [c.name for c in pinned] == ["voms"]
    voms = pinned[0].pin
    assert voms is not None and voms.url.startswith("https://")
    assert len(voms.sha256) == 64 and int(voms.sha256, 16) >= 0
    assert voms.filename == f"voms-{pinned[0].version}.tar.gz"


def test_a_source_version_is_asked_again_only_after_the_lists_are_refreshed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    apt = Apt("trixie", tmp_path, Mirror("http://127.0.0.1:9/debian"))
    served = {"openssl": "3.5.1-1", "curl": "8.14.1-2"}
    asked: list[str] = []

    def ask(package: str) -> str:
        asked.append(package)
        return served[package]

    monkeypatch.setattr(apt, "_served_version", ask)
    (tmp_path / "updated").write_text("deb-src x trixie main\n")
    assert apt.source_version("openssl") == "3.5.1-1"
    assert apt.source_version("curl") == "8.14.1-2"
    assert apt.source_version("openssl") == "3.5.1-1"
    assert asked == ["openssl", "curl"]
    served["openssl"] = "3.5.1-1+deb13u1"
    (tmp_path / "updated").write_text("deb-src x trixie main\n")  # refreshed: a new mtime
    os.utime(tmp_path / "updated", ns=(1, 1))
    assert apt.source_version("openssl") == "3.5.1-1+deb13u1"
    assert asked == ["openssl", "curl", "openssl"]
    (tmp_path / "source-versions.json").write_text("{ damaged")
    assert apt.source_version("curl") == "8.14.1-2" and asked[-1] == "curl"
