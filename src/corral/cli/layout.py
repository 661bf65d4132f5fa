"""How the command line's tables meet the terminal.

In a terminal, a table fits the width by hiding its lesser columns first (host, job id, ...);
the columns people copy from (task names, run ids) and states are never wrapped or cut, and
``--wide`` shows every column. When standard output is not a terminal (a pipe, a file) or
``TERM=dumb``, a table is plain aligned text: no box drawing, no colour, one row a line; with
``--tsv``, tab-separated values. ``NO_COLOR`` is honoured by rich itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Column:
    header: str
    give: int = 0
    """The order in which columns give way at a narrow width: the highest first; 0 never."""
    right: bool = False
    cut: int | None = None
    """A width past which the value is cut with "…" in a terminal (not with --wide)."""


def interactive(console: Console) -> bool:
    """A terminal that can take boxes, colours and redraws (not a pipe, file or TERM=dumb)."""
    return console.is_terminal and not console.is_dumb_terminal


def single_line(cell: Text) -> str:
    """A cell's text on one line (multi-line cells of the terminal joined by ", ")."""
    return ", ".join(x.strip() for x in cell.plain.splitlines()) or "-"


def show_table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Text]], *,
               wide: bool = False, tsv: bool = False, note: str | None = None) -> None:
    """Print a table: see the module's docstring. ``note`` goes below it (a terminal's
    caption, a last line in plain text, left out of TSV)."""
    if tsv:
        lines = ["\t".join(c.header for c in columns)]
        lines += ["\t".join(single_line(cell).replace("\t", " ") for cell in row) for row in rows]
        _write(console, lines)
    elif not interactive(console):
        _write(console, aligned(columns, rows) + ([note] if note else []))
    else:
        console.print(fitted_table(console, columns, rows, wide, note), crop=False)


def aligned(columns: Sequence[Column], rows: Sequence[Sequence[Text]]) -> list[str]:
    """Plain text columns two spaces apart, one row a line."""
    cells = [[c.header for c in columns]] + [[single_line(cell) for cell in row] for row in rows]
    widths = [max(cell_len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for row in cells:
        padded = [_pad(text, w, c.right) for text, w, c in zip(row, widths, columns, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return lines


def _pad(text: str, width: int, right: bool) -> str:
    gap = " " * (width - cell_len(text))
    return gap + text if right else text + gap


def _write(console: Console, lines: list[str]) -> None:
    """Lines as they are: never wrapped, cropped or tab-expanded (rich would)."""
    console.file.write("".join(line + "\n" for line in lines))
    console.file.flush()


def fitted_table(console: Console, columns: Sequence[Column], rows: Sequence[Sequence[Text]],
                  wide: bool, note: str | None) -> Table:
    def build(hidden: frozenset[str]) -> Table:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold",
                      caption_justify="left", caption_style="dim")
        keep = [i for i, c in enumerate(columns) if c.header not in hidden]
        for i in keep:
            c = columns[i]
            table.add_column(c.header, justify="right" if c.right else "left", no_wrap=True,
                             max_width=None if wide else c.cut, overflow="ellipsis")
        for row in rows:
            table.add_row(*(row[i] for i in keep))
        return table

    give = [c.header for c in sorted(columns, key=lambda c: -c.give) if c.give]
    from corral.report.terminal import fitted  # the reports (and the store): only when drawn

    table, hidden = fitted(console, build, give, wide)
    notes = [note] if note else []
    if hidden:
        notes.append(f"{', '.join(hidden)} hidden at this width; --wide shows all")
    table.caption = "; ".join(notes) or None
    return table
