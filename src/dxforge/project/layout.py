"""Where a project's inputs and dxforge's outputs live.

The project directory holds ``recipes/`` and ``construct.yaml``; everything dxforge makes goes
into one build directory, ``<project>/build`` unless ``--build-dir`` (or ``DXFORGE_BUILD_DIR``)
names another. Expensive deterministic builds that any clone may reuse live in the user cache
(:func:`dxforge.core.util.user_cache`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dxforge.core.util import project_root, user_cache

BUILD_ENV = "DXFORGE_BUILD_DIR"


@dataclass(frozen=True)
class Layout:
    root: Path
    build: Path

    @classmethod
    def of(cls, root: Path | None = None, build: Path | None = None) -> Layout:
        """The layout of ``root`` (default: the project around the working directory)."""
        base = Path(os.path.abspath(root or project_root()))
        env = os.environ.get(BUILD_ENV)
        out = build or (Path(env) if env else base / "build")
        return cls(base, Path(os.path.abspath(out)))

    @property
    def recipes(self) -> Path:
        return self.root / "recipes"

    @property
    def construct(self) -> Path:
        return self.root / "construct.yaml"

    @property
    def channels(self) -> Path:
        return self.build / "channels"

    @property
    def channel(self) -> Path:
        """The output channel of ``dxforge build``."""
        return self.channels / "dxforge"

    @property
    def seed(self) -> Path:
        return self.channels / "seed"

    @property
    def sources(self) -> Path:
        return self.build / "sources"

    @property
    def logs(self) -> Path:
        return self.build / "logs"

    @property
    def work(self) -> Path:
        return self.build / "work"

    @property
    def installer(self) -> Path:
        return self.build / "installer"

    @property
    def releases(self) -> Path:
        return self.build / "releases"

    @property
    def cache(self) -> Path:
        return user_cache()

    def rebase(self, path: Path) -> Path:
        """``path`` under ``<project>/build`` moved to the same place under this build directory
        (construct.yaml names the build channels as ``./build/channels/...``); others unchanged."""
        default = self.root / "build"
        try:
            rel = Path(os.path.abspath(path)).relative_to(default)
        except ValueError:
            return path
        return self.build / rel
