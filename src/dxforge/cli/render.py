"""Drawing command results and progress for people: rich on a terminal, plain lines in logs.

Every piece of data is printed literally (never read as rich markup), and nothing a user may
copy (a path, a sha256, a name, a version) is ever cut: terminal tables fold long cells, and
outside a terminal each row becomes one ``key: value`` line, however long.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar
from rich.table import Table
from rich.text import Text

from dxforge.core.progress import Progress


def line(console: Console, text: str, style: str = "") -> None:
    """``text`` exactly as given (no markup, no highlighting, no wrapping of long words)."""
    console.print(Text(text, style=style), soft_wrap=True, highlight=False)


def table(
    console: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[object]],
    caption: str = "",
) -> None:
    """A table on a terminal (cells fold, never cut); outside one, a line per row."""
    if console.is_terminal:
        t = Table(title=title, caption=caption or None)
        for c in columns:
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(*(Text(str(v)) for v in r))
        console.print(t)
        return
    line(console, title)
    for r in rows:
        line(console, "  " + "  ".join(f"{c}: {v}" for c, v in zip(columns, r, strict=True)))
    if caption:
        line(console, caption)


def fields(console: Console, title: str, pairs: Sequence[tuple[str, object]]) -> None:
    """A summary as ``key: value`` lines (copyable on a terminal too)."""
    line(console, title, "bold")
    width = max((len(k) for k, _ in pairs), default=0)
    for k, v in pairs:
        line(console, f"  {k + ':':<{width + 1}} {v}")


def mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


class ConsoleProgress(Progress):
    """Progress for a person: step lines, and a bar for counted stages on a terminal (a line per
    finished item elsewhere). ``describe`` turns an item's result into its line."""

    def __init__(
        self,
        console: Console,
        label: str,
        describe: Callable[[str, object], str] | None = None,
    ) -> None:
        self.console = console
        self.label = label
        self.describe = describe or (lambda item, _r: item)
        self.bar: Bar | None = None
        self.task = 0
        self.total = 0
        self.count = 0
        self.running: dict[str, None] = {}
        """Items started and not yet done (what an interruption stops), in start order."""
        self.stage = ""
        """The last step or counted stage begun."""

    def _line(self, text: str, style: str = "") -> None:
        if self.bar is not None:
            self.bar.console.print(Text(text, style=style), soft_wrap=True, highlight=False)
        else:
            line(self.console, text, style)

    def step(self, text: str) -> None:
        self.stage = text
        self._line(f"{self.label}: {text}", "dim" if self.console.is_terminal else "")

    def begin(self, text: str, total: int) -> None:
        self.close()
        self.stage = text
        self.total, self.count = total, 0
        if self.console.is_terminal:
            self.bar = Bar(
                TextColumn(f"{self.label}: {text}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("", total=total)
        else:
            line(self.console, f"{self.label}: {text} ({total})")

    def start(self, item: str) -> None:
        self.running[item] = None
        if self.bar is not None:
            self.bar.update(self.task, description=item)

    def done(self, item: str, result: object = None) -> None:
        self.running.pop(item, None)
        self.count += 1
        text = self.describe(item, result)
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description="")
            if result is not None:
                self._line(f"  {text}")
        else:
            line(self.console, f"  [{self.count}/{self.total}] {text}")

    def warn(self, text: str) -> None:
        self._line(f"warning: {text}", "yellow")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
