"""The image builder's logic, offline and fast: which packages go in which layer, dated tags,
deterministic layer archives, the OS layer's files, and what a push reports as sent."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from dxforge.conda.channel import Package
from dxforge.core.util import DxError
from dxforge.images import layers, pyc, registry, roles, rootfs
from dxforge.images.build import ENTRYPOINT_SH, ImagesOptions, image_epoch
from dxforge.images.oci import ImageConfig, Layout
from dxforge.images.tags import TagBook, TagRecord, day_of, next_tag
from dxforge.project.target import Target


def pkg(name: str, version: str = "1.0", build: str = "0", ts: int = 1_700_000_000) -> Package:
    return Package(
        name,
        version,
        build,
        "noarch",
        "file:///c",
        f"file:///c/{name}.conda",
        f"{name}-{version}-{build}.conda",
        1,
        hashlib.sha256(name.encode()).hexdigest(),
        "",
        "MIT",
        ts,
    )


# -- roles ---------------------------------------------------------------------------------


def test_the_base_holds_python_voms_git_and_the_ca_certificates() -> None:
    specs = roles.base_specs(Target("3.13"))
    assert specs == ["python 3.13.*", "voms", "git", "ca-certificates"]


def test_a_role_pins_what_it_stands_on_and_asks_for_its_top_package() -> None:
    specs = roles.role_specs("services", "9.8.7", [pkg("python", "3.13.5", "h1_0")])
    assert specs == ["python ==3.13.5 h1_0", "diracx-routers ==9.8.7"]
    assert roles.role_specs("client", "9.8.7", [])[-1] == "diracx ==9.8.7"
    with pytest.raises(DxError, match="unknown image role 'server'"):
        roles.role_specs("server", "9.8.7", [])


def test_a_solution_splits_into_the_role_closure_and_diracx() -> None:
    under = [pkg("python"), pkg("git")]
    solution = [*under, pkg("fastapi"), pkg("diracx-core"), pkg("diracx-routers"), pkg("anyio")]
    parts = roles.split(solution, under)
    assert [p.name for p in parts.others] == ["anyio", "fastapi"]
    assert [p.name for p in parts.diracx] == ["diracx-core", "diracx-routers"]


def test_test_only_packages_never_enter_a_shipped_image() -> None:
    with pytest.raises(DxError, match="diracx-testing would enter a shipped image"):
        roles.split([pkg("diracx-testing")], [])


def test_a_release_that_moves_a_base_package_or_needs_a_new_one_asks_for_new_bases() -> None:
    base = [pkg("python", "3.13.5")]
    with pytest.raises(DxError, match="moved python from 3.13.5 0 to 3.13.6 0"):
        roles.split([pkg("python", "3.13.6")], base)
    with pytest.raises(DxError, match=r"needs fastapi 1.0, which services-base:2026.01.02.0"):
        roles.release_layer(
            [*base, pkg("fastapi"), pkg("diracx-routers")], base, "services-base:2026.01.02.0"
        )
    got = roles.release_layer([*base, pkg("diracx-routers")], base, "services-base:x")
    assert [p.name for p in got] == ["diracx-routers"]


# -- tags ----------------------------------------------------------------------------------


def test_dated_tags_count_the_days_tags_and_repeat_for_the_same_digest(tmp_path: Path) -> None:
    assert next_tag([], "sha256:a", "2026.12.07") == ("2026.12.07.0", True)
    h = [TagRecord("2026.12.06.0", "sha256:a", ""), TagRecord("2026.12.07.0", "sha256:b", "")]
    assert next_tag(h, "sha256:b", "2026.12.07") == ("2026.12.07.0", False)
    assert next_tag(h, "sha256:c", "2026.12.07") == ("2026.12.07.1", True)
    assert next_tag(h, "sha256:c", "2026.12.08") == ("2026.12.08.0", True)
    # the same digest as an older (not the latest) tag is a change back: a new tag
    assert next_tag(h, "sha256:a", "2026.12.07") == ("2026.12.07.1", True)
    assert day_of(dt.datetime(2026, 1, 2, 23, 59, tzinfo=dt.UTC)) == "2026.01.02"


def test_the_tag_book_round_trips_and_names_a_broken_file(tmp_path: Path) -> None:
    book = TagBook(tmp_path / "tags.json")
    book.add("base", TagRecord("2026.12.07.0", "sha256:a", "t"))
    book.save()
    again = TagBook(tmp_path / "tags.json")
    assert again.latest("base") == TagRecord("2026.12.07.0", "sha256:a", "t")
    assert again.find("base", "2026.12.07.0").digest == "sha256:a"
    with pytest.raises(DxError, match="base has no tag 2026.12.07.9 .known: 2026.12.07.0"):
        again.find("base", "2026.12.07.9")
    (tmp_path / "tags.json").write_text("[1")
    with pytest.raises(DxError, match=r"tags\.json: not a tag record"):
        TagBook(tmp_path / "tags.json")


# -- layers --------------------------------------------------------------------------------


def test_group_gets_the_owners_bits() -> None:
    assert layers.group_like_user(0o755) == 0o775
    assert layers.group_like_user(0o644) == 0o664
    assert layers.group_like_user(0o700) == 0o770
    assert layers.group_like_user(0o100644) == 0o664


def _members(path: Path) -> list[tuple[str, int, int, int, int]]:
    with tarfile.open(path) as t:
        return [(m.name, m.mode, m.uid, m.gid, m.mtime) for m in t]


def test_a_layer_is_sorted_has_its_parents_and_the_same_bytes_every_time(tmp_path: Path) -> None:
    entries = [
        layers.Entry("opt/diracx/bin/python", "file", 0o775, data=b"x"),
        layers.Entry("activate.sh", "file", 0o664, data=b"y"),
        layers.Entry("opt/diracx/bin/python3", "symlink", 0o777, target="python"),
    ]
    a = layers.write(entries, tmp_path / "a.tar", 1234)
    b = layers.write(list(reversed(entries)), tmp_path / "b.tar", 1234)
    assert a.read_bytes() == b.read_bytes()
    names = [m[0] for m in _members(a)]
    assert names == [
        "activate.sh",
        "opt",
        "opt/diracx",
        "opt/diracx/bin",
        "opt/diracx/bin/python",
        "opt/diracx/bin/python3",
    ]
    assert {m[4] for m in _members(a)} == {1234}
    assert {(m[2], m[3]) for m in _members(a)} == {(0, 0)}
    assert layers.write(entries, tmp_path / "c.tar", 1235).read_bytes() != a.read_bytes()


def test_package_entries_take_files_and_a_clean_record(tmp_path: Path) -> None:
    prefix = tmp_path / "stage"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "lib").mkdir()
    (prefix / "lib/a.py").write_text("a")
    (prefix / "lib/link").symlink_to("a.py")
    p = pkg("a")
    record = {
        "name": "a",
        "files": ["lib/a.py", "lib/link"],
        "extracted_package_dir": "/cache/a",
        "package_tarball_full_path": "/cache/a.conda",
        "link": {"source": "/cache/a", "type": 1},
    }
    (prefix / layers.meta_name(p)).write_text(json.dumps(record))
    got = {e.path: e for e in layers.package_entries(prefix, "/opt/diracx", [p])}
    assert set(got) == {
        "opt/diracx/lib/a.py",
        "opt/diracx/lib/link",
        "opt/diracx/conda-meta/a-1.0-0.json",
    }
    assert got["opt/diracx/lib/link"].kind == "symlink"
    meta = json.loads(got["opt/diracx/conda-meta/a-1.0-0.json"].data or b"")
    assert "extracted_package_dir" not in meta and meta["link"] == {"type": 1}
    with pytest.raises(DxError, match="b is not installed in the staging prefix"):
        layers.package_entries(prefix, "/opt/diracx", [pkg("b")])


def test_a_record_naming_the_staging_prefix_is_refused(tmp_path: Path) -> None:
    prefix = tmp_path / "stage"
    (prefix / "conda-meta").mkdir(parents=True)
    p = pkg("a")
    (prefix / layers.meta_name(p)).write_text(json.dumps({"files": [], "x": str(prefix)}))
    with pytest.raises(DxError, match="would leak a build path"):
        layers.package_entries(prefix, "/opt/diracx", [p])


# -- the OS layer -------------------------------------------------------------------------


def test_passwd_and_group_add_the_image_user_once() -> None:
    text = rootfs.passwd("root:x:0:0:root:/root:/bin/bash\n")
    assert text.splitlines()[0] == "root:x:0:0:root:/root:/bin/bash"
    assert "diracx:x:1000:0:DiracX:/home/diracx:/bin/sh" in text.splitlines()
    assert rootfs.passwd(text) == text
    assert rootfs.group("") == "root:x:0:\nnogroup:x:65534:\n"


def test_an_extracted_root_gets_a_dpkg_database_from_its_control_fields() -> None:
    control = (
        "Package: libc6\nVersion: 2.36-9\nArchitecture: amd64\nDescription: GNU C\n"
        " more text\n\nPackage: dash\nVersion: 0.5.12\nArchitecture: amd64\n\n"
    )
    status = rootfs.dpkg_status(control)
    assert "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9" in status
    assert " more text" in status
    assert [s["Package"] for s in rootfs.stanzas(status)] == ["dash", "libc6"]


def _os_tar(path: Path) -> Path:
    with tarfile.open(path, "w") as t:
        for name, kind in (
            ("./", "d"),
            ("./dev/", "d"),
            ("./dev/null", "c"),
            ("./etc/", "d"),
            ("./etc/passwd", "f"),
            ("./usr/bin/tini", "f"),
            ("./usr/bin/tini2", "h"),
            ("./var/log/", "d"),
            ("./var/log/apt.log", "f"),
            ("./etc/hostname", "f"),
        ):
            info = tarfile.TarInfo(name)
            info.mtime = 999
            data = b""
            if kind == "d":
                info.type = tarfile.DIRTYPE
            elif kind == "c":
                info.type = tarfile.CHRTYPE
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, "./usr/bin/tini"
            else:
                data = b"root:x:0:0:root:/root:/bin/sh\n" if "passwd" in name else b"bin"
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data else None)
    return path


def test_the_os_layer_drops_devices_logs_and_host_files_and_adds_the_user(tmp_path: Path) -> None:
    control = tmp_path / "c"
    control.write_text("Package: tini\nVersion: 1\nArchitecture: amd64\n")
    root = rootfs.OsRoot(rootfs.OS_CHOICES["minimal"], _os_tar(tmp_path / "r.tar"), control, "k")
    got = {e.path: e for e in rootfs.layer_entries(root)}
    assert "dev/null" not in got and "var/log/apt.log" not in got and "etc/hostname" not in got
    assert "dev" in got and "var/log" in got
    assert got["usr/bin/tini2"].kind == "file" and got["usr/bin/tini2"].data == b"bin"
    assert got["home/diracx"].uid == 1000 and got["home/diracx"].mode == 0o775
    assert got["tmp"].mode == 0o1777
    assert b"diracx:x:1000:0" in (got["etc/passwd"].data or b"")
    assert b"Status: install ok installed" in (got["var/lib/dpkg/status"].data or b"")
    assert [p.name for p in root.packages()] == ["tini"]


def test_the_entrypoint_is_posix_sh_and_shellcheck_clean(tmp_path: Path) -> None:
    script = tmp_path / "entrypoint.sh"
    script.write_text(ENTRYPOINT_SH)
    if not shutil.which("shellcheck"):
        pytest.skip("shellcheck is not installed")
    subprocess.run(["shellcheck", "-x", "-e", "SC1091", str(script)], check=True)
    assert ENTRYPOINT_SH.splitlines()[-1] == 'exec "$@"'


def test_image_times_come_from_source_date_epoch_else_the_packages(monkeypatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    assert image_epoch([pkg("a", ts=5), pkg("b", ts=9)]) == 9
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "42")
    assert image_epoch([pkg("a", ts=5)]) == 42


def test_the_image_configuration_clears_what_the_base_set() -> None:
    opts = ImageConfig(
        "1000:0",
        ("A=1",),
        ("/usr/bin/tini", "--"),
        ("sh",),
        "/home/diracx",
        ("8000/tcp",),
        {"org.opencontainers.image.version": "9.8.7"},
    ).options()
    assert opts[:6] == [
        "--clear=config.env",
        "--clear=config.entrypoint",
        "--clear=config.cmd",
        "--clear=config.labels",
        "--clear=config.exposedports",
        "--clear=manifest.annotations",
    ]
    assert "--config.exposedports=8000/tcp" in opts
    assert "--manifest.annotation=org.opencontainers.image.version=9.8.7" in opts
    assert ImagesOptions.__dataclass_fields__["archives"].default is True


# -- registry ------------------------------------------------------------------------------


def test_only_blobs_the_registry_lacked_count_as_sent() -> None:
    a, b, c = ("sha256:" + x * 64 for x in "abc")
    out = (
        f'level=debug msg="Skipping blob {a} (already present):"\n'
        f"Copying blob {b} done\nCopying blob {c} skipped: already exists\n"
    )
    assert registry.sent_blobs(out, [a, b, c]) == [b]


def test_a_push_destination_is_registry_slash_namespace() -> None:
    assert registry.check_destination("127.0.0.1:5000/diracx/") == "127.0.0.1:5000/diracx"
    with pytest.raises(DxError, match="give REGISTRY/NAMESPACE"):
        registry.check_destination("diracx")


@pytest.mark.skipif(not shutil.which("umoci"), reason="umoci is not installed")
def test_umoci_layouts_are_reproducible_and_share_the_base_layers(tmp_path: Path) -> None:
    tar = layers.write([layers.Entry("etc/x", "file", 0o644, data=b"x")], tmp_path / "l.tar", 7)
    top = layers.write([layers.Entry("opt/y", "file", 0o644, data=b"y")], tmp_path / "t.tar", 7)
    cfg = ImageConfig("1000:0", ("A=1",), ("/bin/sh",), (), "/")
    digests = []
    for n in (1, 2):
        lay = Layout(tmp_path / f"l{n}").ensure()
        lay.new("base:1")
        lay.add_layer("base:1", tar, 7, "os")
        lay.configure("base:1", cfg, 7)
        lay.tag("base:1", "rel:v1")
        lay.add_layer("rel:v1", top, 7, "diracx")
        lay.configure("rel:v1", cfg, 7)
        lay.gc()
        digests.append((lay.digest("base:1"), lay.digest("rel:v1")))
        assert lay.layers("rel:v1")[0] == lay.layers("base:1")[0]
    assert digests[0] == digests[1]


# -- byte code in the layers ----------------------------------------------------------------


def _staged(prefix: Path, python: str) -> list[Package]:
    """A staging prefix whose python is this one: package a ships sources (one that does not
    compile, a script outside lib/), package b its own .pyc."""
    import sys

    lib = f"lib/python{python}/site-packages"
    files = {
        "a": {
            f"{lib}/a/__init__.py": "X = {'one', 'two', 'three'}\n",
            f"{lib}/a/bad.py": "def (:\n",
            "bin/tool.py": "print('not in lib')\n",
        },
        "b": {
            f"{lib}/b.py": "Y = 2\n",
            f"{lib}/__pycache__/b.{pyc.cache_tag(python)}.pyc": "shipped",
        },
    }
    (prefix / "bin").mkdir(parents=True)
    (prefix / f"bin/python{python}").symlink_to(sys.executable)
    (prefix / "conda-meta").mkdir()
    out = []
    for name, content in files.items():
        for rel, text in content.items():
            (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
            (prefix / rel).write_text(text)
        p = pkg(name)
        (prefix / layers.meta_name(p)).write_text(json.dumps({"files": sorted(content)}))
        out.append(p)
    return out


def test_a_layer_ships_unchecked_hash_pyc_recorded_at_the_image_prefix(tmp_path: Path) -> None:
    import sys

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    tag = pyc.cache_tag(python)
    made = []
    for where in ("one", "another/place"):
        prefix = tmp_path / where / "stage"
        packages = _staged(prefix, python)
        assert [Path(s).name for s in pyc.sources(prefix, packages, python)] == [
            "__init__.py",
            "bad.py",
        ]
        failed = pyc.compile_layer(prefix, packages, python, "/opt/diracx")
        assert [Path(f).name for f in failed] == ["bad.py"]
        got = {e.path: e for e in layers.package_entries(prefix, "/opt/diracx", packages, tag)}
        lib = f"opt/diracx/lib/python{python}/site-packages"
        data = (got[f"{lib}/a/__pycache__/__init__.{tag}.pyc"].source or Path()).read_bytes()
        assert int.from_bytes(data[4:8], "little") == 0b01  # hash-based, source not checked
        assert f"/{lib}/a/__init__.py".encode() in data and str(prefix).encode() not in data
        assert f"{lib}/a/__pycache__/bad.{tag}.pyc" not in got
        assert (got[f"{lib}/__pycache__/b.{tag}.pyc"].source or Path()).read_text() == "shipped"
        assert not any(p.startswith("opt/diracx/bin/__pycache__") for p in got)
        made.append(data)
    assert made[0] == made[1]  # the same bytes wherever the layer is staged


def test_the_release_images_check_skips_visibly_where_containers_cannot_run(
    tmp_path: Path, monkeypatch
) -> None:
    """No podman on PATH: the check is ``skipped`` with the reason, and warns; never passed."""
    from dxforge.core.progress import Progress
    from dxforge.images.stage import check_release_images
    from dxforge.project.layout import Layout as ProjectLayout

    class Record(Progress):
        warned: list[str] = []

        def warn(self, text: str) -> None:
            self.warned.append(text)

    monkeypatch.setenv("PATH", str(tmp_path))
    res = check_release_images(ProjectLayout.of(tmp_path), "9.9.9", Record())
    assert res.status == "skipped" and res.checks == []
    assert res.reason and ("podman is not installed" in res.reason or "root" in res.reason)
    assert Record.warned == [f"the container images are NOT tested: {res.reason}"]
    assert not (tmp_path / "build").exists()  # nothing built, nothing run
