"""Container image benchmark (`dxforge images`), each part on its own:

- `writers LAYER.tar ...`: the same layer archives written into an OCI layout by umoci
  (`raw add-layer`, what dxforge uses), by buildah (`from scratch`, `add`, `commit --timestamp`)
  and by Python alone (gzip + sha256 + the JSON a registry library such as oras or python-dxf
  would push; neither writes layouts): seconds, compressed bytes, and whether two runs give
  the same manifest digest;
- `os`: the two OS layers (`minimal`: libc6, dash, tini extracted; `minbase`: Debian's
  minbase and tini): compressed size, OS package count, and the time `podman run` takes to
  start the base image and run `python -c pass` (best of 5);
- `build`: `dxforge images` with an empty user cache for its layers (cold) and again (warm),
  the compressed size of each layer and image;
- `push`: the bytes a push sends to a registry on 127.0.0.1, first everything, then a release
  that changes only DiracX over the bases it already holds.
- `start`: the services image's start without and with `.pyc` in its layers
  (the same channels, layers made each way): the time from `podman run` of the services to a
  healthy `/api/health/live`, and the chart's jobs (`rotate-jwk`, `init-sql`, ...), as the
  end-to-end check (`images.check.check_services`) measures them.

usage: .venv/bin/python benchmarks/bench_images.py {writers,os,build,push,start} [...]
Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dxforge.images.oci import ImageConfig, Layout  # noqa: E402


def umoci_write(layers: list[Path], d: Path) -> tuple[str, int]:
    lay = Layout(d / "umoci").ensure()
    lay.new("x:1")
    for tar in layers:
        lay.add_layer("x:1", tar, 0, "bench")
    lay.configure("x:1", ImageConfig("0:0", (), ("/bin/sh",), (), "/"), 0)
    return lay.digest("x:1"), sum(la.size for la in lay.layers("x:1"))


def buildah_write(layers: list[Path], d: Path) -> tuple[str, int]:
    store = d / "buildah-store"
    store.mkdir(parents=True, exist_ok=True)
    (store / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\ngraphroot = "{store}/g"\nrunroot = "{store}/r"\n'
    )
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(store / "storage.conf")}

    def b(*args: str) -> str:
        return subprocess.run(
            ["buildah", *args], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()

    ctr = b("from", "scratch")
    for tar in layers:
        b("add", ctr, str(tar), "/")
    out = d / "buildah"
    b("commit", "--timestamp", "0", "--disable-compression=false", "--quiet", ctr, f"oci:{out}:x:1")
    b("rm", ctr)
    subprocess.run(["buildah", "rmi", "-a", "-f"], env=env, capture_output=True, check=False)
    lay = Layout(out)
    return lay.digest("x:1"), sum(la.size for la in lay.layers("x:1"))


def python_write(layers: list[Path], d: Path) -> tuple[str, int]:
    blobs = d / "python" / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> tuple[str, int]:
        h = hashlib.sha256(data).hexdigest()
        (blobs / h).write_bytes(data)
        return f"sha256:{h}", len(data)

    descs, diffs = [], []
    for tar in layers:
        raw = tar.read_bytes()
        diffs.append("sha256:" + hashlib.sha256(raw).hexdigest())
        digest, size = put(gzip.compress(raw, compresslevel=6, mtime=0))
        descs.append(
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": digest,
                "size": size,
            }
        )
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diffs},
    }
    cdigest, csize = put(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": cdigest,
            "size": csize,
        },
        "layers": descs,
    }
    mdigest, msize = put(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": manifest["mediaType"],
                "digest": mdigest,
                "size": msize,
                "annotations": {"org.opencontainers.image.ref.name": "x:1"},
            }
        ],
    }
    (d / "python" / "index.json").write_text(json.dumps(index))
    (d / "python" / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return mdigest, sum(x["size"] for x in descs)


def writers(tars: list[Path]) -> None:
    raw = sum(t.stat().st_size for t in tars)
    print(f"{len(tars)} layers, {raw / 1e6:.1f} MB uncompressed")
    print(f"{'writer':<8} {'seconds':>8} {'compressed MB':>14} {'reproducible':>13}")
    for name, fn in (("umoci", umoci_write), ("buildah", buildah_write), ("python", python_write)):
        if name != "python" and not shutil.which(name):
            print(f"{name:<8} not installed")
            continue
        runs = []
        for _ in range(2):
            with tempfile.TemporaryDirectory(prefix="bench-images-") as d:
                t0 = time.perf_counter()
                digest, size = fn(tars, Path(d))
                runs.append((time.perf_counter() - t0, digest, size))
        best = min(r[0] for r in runs)
        print(
            f"{name:<8} {best:>8.2f} {runs[0][2] / 1e6:>14.2f} {str(runs[0][1] == runs[1][1]):>13}"
        )


def os_layers() -> None:
    from dxforge.core.util import user_cache
    from dxforge.images import layers, rootfs

    print(f"{'OS layer':<8} {'packages':>8} {'raw MB':>7} {'gzip MB':>8}")
    for name in rootfs.OS_CHOICES:
        root = rootfs.os_root(name, user_cache())
        with tempfile.TemporaryDirectory(prefix="bench-os-") as d:
            tar = layers.write(rootfs.layer_entries(root), Path(d) / "os.tar", 0)
            _, size = umoci_write([tar], Path(d))
            print(
                f"{name:<8} {len(root.packages()):>8} {tar.stat().st_size / 1e6:>7.1f} "
                f"{size / 1e6:>8.2f}"
            )


def start_time(image_layout: Path, ref: str, argv: list[str], repeat: int = 5) -> float:
    from dxforge.images.podman import Podman

    with tempfile.TemporaryDirectory(prefix="bench-podman-") as d, Podman(Path(d)) as pm:
        name = pm.load(Layout(image_layout), ref)
        best = 1e9
        for _ in range(repeat):
            t0 = time.perf_counter()
            ran = pm("run", "--rm", "--network=none", name, *argv, check=False)
            best = min(best, time.perf_counter() - t0)
            if not ran.ok:
                raise SystemExit(f"{ref}: {ran.tail()}")
        return best


def os_start() -> None:
    from dxforge.images.build import ImagesOptions, build_images
    from dxforge.project.layout import Layout as ProjectLayout
    from dxforge.project.model import Project

    for name in ("minimal", "minbase"):
        with tempfile.TemporaryDirectory(prefix="bench-os-base-") as d:
            res = build_images(
                ImagesOptions(
                    Project.of(ProjectLayout.of(ROOT)),
                    os=name,
                    roles=(),
                    releases=False,
                    out=Path(d),
                )
            )
            base = res.images[0]
            t = start_time(Path(d) / "oci", base.ref, ["python", "-c", "pass"])
            print(
                f"{name:<8} base {render_mb(base.size)} compressed; podman run python -c "
                f"pass: {t:.2f} s (best of 5)"
            )


def render_mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def build() -> None:
    from dxforge.images.build import ImagesOptions, build_images
    from dxforge.project.layout import Layout as ProjectLayout
    from dxforge.project.model import Project

    with tempfile.TemporaryDirectory(prefix="bench-build-") as d:
        base = Path(d)
        os.environ["DXFORGE_CACHE"] = str(base / "cache")
        shutil.copytree(
            ProjectLayout.of(ROOT).cache / "images" / "os", base / "cache" / "images" / "os"
        )  # the OS root is mmdebstrap's time, not ours
        opts = ImagesOptions(Project.of(ProjectLayout.of(ROOT)), out=base / "out", archives=False)
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            res = build_images(opts)
            print(f"{label}: {time.perf_counter() - t0:.1f} s")
        for i in res.images:
            sizes = ", ".join(f"{la.what} {render_mb(la.size)}" for la in i.layers)
            print(f"  {i.ref:<32} {render_mb(i.size):>9}  ({sizes})")


def push() -> None:
    """Push the project's images to a registry on 127.0.0.1 (bases first), then a release
    that changes only DiracX (the release images again, on the same base tags, with another
    SOURCE_DATE_EPOCH: a new DiracX layer), and print the bytes each push sent."""
    import socket

    from dxforge.images.build import ImagesOptions, build_images
    from dxforge.images.registry import push_images
    from dxforge.project.layout import Layout as ProjectLayout
    from dxforge.project.model import Project

    with tempfile.TemporaryDirectory(prefix="bench-registry-") as d:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = Path(d) / "cfg.yml"
        cfg.write_text(
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {d}/s\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        reg = subprocess.Popen(
            ["docker-registry", "serve", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(1)
            dest = f"127.0.0.1:{port}/diracx"
            layout = ProjectLayout.of(ROOT)
            first = build_images(ImagesOptions(Project.of(layout), archives=False))
            t0 = time.perf_counter()
            sent = push_images(first, dest, tls_verify=False)
            print(
                f"first push: {len(sent.images)} images, {sent.bytes_sent / 1e6:.1f} MB sent "
                f"in {time.perf_counter() - t0:.1f} s"
            )
            for i in sent.images:
                print(f"  {i.ref}: {i.blobs_sent} blobs, {i.bytes_sent} bytes")
            epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "1767225600")) + 86400
            os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
            again = build_images(ImagesOptions(Project.of(layout), bases=False, archives=False))
            sent = push_images(again, dest, tls_verify=False)
            print(f"a release changing only DiracX: {sent.bytes_sent} bytes sent")
            for i in sent.images:
                print(f"  {i.ref}: {i.blobs_sent} blobs, {i.bytes_sent} bytes")
        finally:
            reg.terminate()
            reg.wait(10)


def start() -> None:
    """The services' start without, then with byte code in the layers."""
    from dxforge.images.build import ImagesOptions, build_images, build_test_image
    from dxforge.images.check import check_services
    from dxforge.images.stage import why_not_check
    from dxforge.project.layout import Layout as ProjectLayout
    from dxforge.project.model import Project
    from dxforge.project.recipes import load_recipes

    why = why_not_check()
    if why:
        raise SystemExit(f"cannot run the containers here: {why}")
    layout = ProjectLayout.of(ROOT)  # its build directory: $DXFORGE_BUILD_DIR, else build/
    version = next(r.version for r in load_recipes(ROOT) if r.name == "diracx")
    for label, pyc in (("without .pyc (before)", False), ("with .pyc (now)", True)):
        with tempfile.TemporaryDirectory(prefix="bench-start-") as d:
            opts = ImagesOptions(Project.of(layout), out=Path(d) / "out", archives=False, pyc=pyc)
            built = build_images(opts)
            test = build_test_image(opts)
            services = next(i for i in built.images if i.ref == f"services:v{version}")
            res = check_services(Layout(Path(d) / "out" / "oci"), version, Path(d) / "c")
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in res.steps.items())
            print(
                f"{label}: services {render_mb(services.size)} (+ tests {render_mb(test.size)}); "
                f"podman run to a healthy /api/health/live: {res.healthy_seconds:.1f} s\n"
                f"  {steps}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    w = sub.add_parser("writers")
    w.add_argument("tars", nargs="+", type=Path)
    sub.add_parser("os")
    sub.add_parser("build")
    sub.add_parser("push")
    sub.add_parser("start")
    args = ap.parse_args()
    if args.what == "writers":
        writers(args.tars)
    elif args.what == "os":
        os_layers()
        os_start()
    elif args.what == "build":
        build()
    elif args.what == "push":
        push()
    elif args.what == "start":
        start()


if __name__ == "__main__":
    main()
