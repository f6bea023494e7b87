"""The journey printer: what the sandbox did, in a form a person reads top to bottom.

Plain text, one section per act of the story, every event with its hops and the time each hop
took since the event was raised. Knows nothing about AWS: it prints what it is given.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

from sandbox.journal import Hop

OK, FAIL, SKIP = "✓", "✗", "·"


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def table(rows: Sequence[Sequence[str]], indent: int = 2) -> list[str]:
    """Rows aligned in columns (the first row is usually the header)."""
    if not rows:
        return []
    widths = [max(len(str(row[i])) for row in rows if i < len(row)) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [str(cell).ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append(" " * indent + "  ".join(cells).rstrip())
    return lines


def hop_lines(hops: Sequence[Hop], origin: float, indent: int = 6) -> list[str]:
    """One line per hop: time since `origin`, what moved the event, where it is, a note."""
    rows = [(milliseconds(hop.at - origin).strip(), hop.step, hop.where, hop.note) for hop in hops]
    widths = [max(len(r[i]) for r in rows) for i in range(3)] if rows else [0, 0, 0]
    lines = []
    for elapsed, step, where, note in rows:
        text = f"+{elapsed.rjust(widths[0])}  {step.ljust(widths[1])}  {where.ljust(widths[2])}"
        lines.append(" " * indent + (f"{text}  {note}" if note else text).rstrip())
    return lines


class Printer:
    """Writes the journey to a stream (stdout by default); `quiet` keeps only the verdict."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self._stream = stream or sys.stdout
        self._quiet = quiet

    def line(self, text: str = "") -> None:
        if not self._quiet:
            print(text, file=self._stream, flush=True)

    def lines(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.line(text)

    def section(self, title: str, note: str = "") -> None:
        self.line()
        self.line(f"{title}  ({note})" if note else title)

    def verdict(self, text: str) -> None:
        """The last line: printed even when quiet."""
        print(text, file=self._stream, flush=True)
