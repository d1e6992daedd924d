"""Where a row of a CSV file read by pandas starts: its line, for the errors that name it.

pandas skips blank lines (and lines of spaces) and lets a quoted field run over
several lines, so a row's position plus two (one for the header, one to count
from 1) is its line only in a file with neither. :func:`record_line` counts the
records again, as pandas counts them, and is called only when an error names a
row, so a good file costs nothing.
"""

from __future__ import annotations

import csv
import io

__all__ = ["record_line"]


def record_line(text: str, delimiter: str, pos: int) -> int:
    """The line of ``text`` where data row ``pos`` (0-based, after the header) starts."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)
    ended = 0  # the last line of the previous record
    records = -1  # the header is record -1
    for row in reader:
        start, ended = ended + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):  # a blank line: pandas skips it
            continue
        if records == pos:
            return start
        records += 1
    return pos + 2
