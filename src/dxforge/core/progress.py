"""How a command's logic reports what it is doing: one callback style for every command.

Logic takes a :class:`Progress` and calls it; it never prints. The command line renders the
calls (a live display on a terminal, plain lines in a log); tests record them.
"""

from __future__ import annotations


class Progress:
    """A sink for progress reports; this base class ignores them."""

    def step(self, text: str) -> None:
        """A stage begins (``solving 4 specs``)."""

    def begin(self, text: str, total: int) -> None:
        """A stage of ``total`` countable items begins."""

    def start(self, item: str) -> None:
        """Work on one item of the current stage begins."""

    def done(self, item: str, result: object = None) -> None:
        """One item of the current stage is finished; ``result`` is its typed result row."""

    def warn(self, text: str) -> None:
        """Something the user should know, that does not stop the command."""


SILENT = Progress()
