"""Writing a planned bump: every changed recipe and construct.yaml, all or none."""

from __future__ import annotations

from pathlib import Path

from dxforge.bump.edit import new_construct_text
from dxforge.bump.plan import BumpOptions, BumpResult, plan_bump
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, atomic_write_text, file_lock

Change = tuple[Path, str, str]
"""A file, its text when the bump read it, and its new text."""


def _changes(result: BumpResult) -> list[Change]:
    changes = [(p.doc.path, p.doc.text, p.new_text) for p in result.packages if p.new_text]
    construct = result.root / "construct.yaml"
    if construct.exists():
        old_text = construct.read_bytes().decode("utf-8")
        new_text = new_construct_text(construct, old_text, result.current, result.target)
        if new_text is not None:
            changes.append((construct, old_text, new_text))
    return changes


def _unchanged_since_read(changes: list[Change]) -> None:
    for path, old, _new in changes:
        try:
            now = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DxError(
                f"{path}: cannot read it again before writing ({e}); nothing was written"
            ) from None
        if now != old:
            raise DxError(
                f"{path} changed while dxforge bump ran; nothing was written; run it again"
            )


def _restore(written: list[tuple[Path, str]], error: BaseException) -> DxError:
    """Put back the files already written; the error to raise for ``error``."""
    failed = []
    for path, old in reversed(written):
        try:
            atomic_write_text(path, old)
        except OSError as e2:
            failed.append(f"{path} ({e2})")
    if failed:
        return DxError(
            f"writing the recipes failed ({error}) and restoring {', '.join(failed)} failed "
            "too; restore them from version control (git checkout recipes/)"
        )
    return DxError(
        f"writing the recipes failed ({error}); the {len(written)} already written were "
        "restored, nothing was changed"
    )


def write_all(result: BumpResult) -> list[Path]:
    """Write every changed recipe and construct.yaml, or none: on an error the ones written
    are restored."""
    changes = _changes(result)
    _unchanged_since_read(changes)
    written: list[tuple[Path, str]] = []
    try:
        for path, old, new in changes:
            if new != old:
                atomic_write_text(path, new)
                written.append((path, old))
    except (OSError, DxError) as e:
        raise _restore(written, e) from None
    except BaseException:
        _restore(written, RuntimeError("interrupted"))
        raise
    return [p for p, _ in written]


def run_bump(opts: BumpOptions, progress: Progress = SILENT) -> BumpResult:
    """Plan the bump and, unless checking or dry-running, write all recipes atomically."""
    if opts.check or opts.dry_run:
        return plan_bump(opts, progress)
    with file_lock(opts.layout.build / ".bump.lock", "dxforge bump"):
        try:
            result = plan_bump(opts, progress)
        except DxError as e:
            msg = str(e)
            if "nothing was changed" not in msg:
                msg += "; no recipe was changed"
            raise DxError(msg) from None
        if result.status == "updated":
            result.written = write_all(result)
    return result
