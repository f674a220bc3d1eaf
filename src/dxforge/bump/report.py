"""The text a bump reports: the pull-request body (Markdown, in the manner of conda-forge's
autotick bot), the drift rows and the one-line verdict. Terminal tables are drawn by the CLI."""

from __future__ import annotations

from dxforge.bump.drift import Change, DriftRow, drift_table
from dxforge.bump.plan import BumpResult


def drift_rows(result: BumpResult) -> list[tuple[str, Change]]:
    return [(p.doc.name, c) for p in result.packages for c in p.drift]


def pr_body(result: BumpResult) -> str:
    """A Markdown pull-request body for the bump, in the manner of conda-forge's autotick bot."""
    old, new = result.current, result.target
    lines = [
        f"## DiracX {old} -> {new}",
        "",
        f"This pull request moves all {len(result.packages)} recipes from **{old}** to "
        f"**{new}** in lockstep: `context.version`, the sdist sha256 (from the package index, "
        "checked against the downloaded file) and build number 0. It was made by `dxforge bump`.",
        "",
        "### Sources",
        "",
        "| package | sdist | old sha256 | new sha256 |",
        "|---|---|---|---|",
    ]
    for p in result.packages:
        lines.append(
            f"| {p.doc.name} | `{p.sdist.filename if p.sdist else '?'}` | `{p.doc.sha256}` | "
            f"`{p.new_sha256 or '?'}` |"
        )
    lines += ["", "### Dependency analysis", ""]
    rows = drift_rows(result)
    if rows:
        state = (
            "These changes **were applied** to the run requirements (`--apply-deps`)."
            if result.drift_applied
            else "These changes were **not applied**: update the run requirements, or run "
            "`dxforge bump --apply-deps`."
        )
        lines += [
            f"The run requirements of the recipes differ from the Requires-Dist of {new} "
            "(through the conda-forge name map). " + state,
            "",
            *drift_table([DriftRow(n, c.name, c.kind, c.recipe, c.upstream) for n, c in rows]),
        ]
    else:
        lines.append(f"The run requirements match the Requires-Dist of {new}: no drift found.")
    notes = result.notes + [n for p in result.packages for n in p.notes]
    if notes:
        lines += ["", "### Notes", ""] + [f"- {n}" for n in notes]
    lines += [
        "",
        "### Checklist",
        "",
        "- [ ] Dependencies checked: the drift above is resolved (run requirements match "
        "upstream, siblings pinned `==${{ version }}`)",
        "- [ ] `context.python_min` still matches upstream's Requires-Python",
        "- [ ] Console scripts (`python.entry_points`) still match upstream's",
        "- [ ] License and license file unchanged (GPL-3.0-only)",
        "- [ ] `dxforge fetch` and `dxforge build` succeed; all recipe tests pass",
        "- [ ] `construct.yaml` (version, `diracx` pin, file name) moved with the recipes",
        "",
    ]
    return "\n".join(lines)


def _plain(spec: str | None) -> str:
    return "-" if spec is None else (spec or "(any)")


def verdict(result: BumpResult) -> str:
    """The outcome in one line."""
    if not result.update:
        newest = (
            f" (newest on the index for all: {result.newest_common})"
            if result.newest_common
            else ""
        )
        return f"up to date: the recipes are at {result.current}{newest}"
    text = {
        "update-available": f"update available: {result.current} -> {result.target}",
        "would-update": f"dry run: {len(result.packages)} recipes would move to {result.target}",
        "updated": f"updated {sum(p.name == 'recipe.yaml' for p in result.written)} recipes"
        + (" and construct.yaml" if any(p.name == "construct.yaml" for p in result.written) else "")
        + f" to {result.target}",
    }[result.status]
    if drift_rows(result) and result.status != "update-available":
        text += "; drift " + (
            "applied" if result.drift_applied else "not applied (use --apply-deps)"
        )
    return text


def drift_summary(changes: list[Change]) -> str:
    """``+1 -2 ~1`` for a package's drift."""
    counts = {k: sum(c.kind == k for c in changes) for k in ("added", "removed", "changed")}
    signs = (("added", "+"), ("removed", "-"), ("changed", "~"))
    return " ".join(f"{s}{counts[k]}" for k, s in signs if counts[k])


def plain(spec: str | None) -> str:
    return "-" if spec is None else (spec or "(any)")
