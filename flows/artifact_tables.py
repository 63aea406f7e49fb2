"""How reviewflow's Prefect artifacts read at a normal window width: short cells, the
important columns first, pictures inline.

The Prefect UI draws a table artifact (and a Markdown table) with every cell on one line,
clipped with an ellipsis, and the table scrolls sideways past its panel: a cell holding a
dict, or a table of many wide columns, shows its reader "sco…" at the edge. So every
value is formatted here into a short string of words and figures, and a table's width,
as the sum of its columns' widest cells, is kept within ``WINDOW_CHARS``
(``table_chars``): about what the artifact panel shows in a 1280-pixel window.

Pictures go into Markdown as ``data:`` URIs (``markdown_image``): the UI renders them
(marked, no sanitizer), and they need no URL the browser can reach, so the same
artifact works for a local data root and for ``s3://`` (an image artifact needs a URL:
a presigned one would expire, a ``file://`` one is not served).
"""

from __future__ import annotations

import base64
import re

# Characters of 0.875rem text in the artifact panel of a 1280-pixel window (about 7.5
# pixels each), and what a cell's padding (0.75rem each side) costs in them.
WINDOW_CHARS = 120
CELL_PADDING_CHARS = 3
LONGEST_NAME = 32  # a file name longer than this is shortened in the middle


def figure(value: float | None, digits: int = 3) -> str:
    """A rate or index as a short string: ``0.021``, ``-`` when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def short_name(name: str, longest: int = LONGEST_NAME) -> str:
    """A file name that fits a column: kept whole up to ``longest`` characters, else its
    first and last words (the extension among them) around an ellipsis, cut where the
    name has a ``-``, ``_``, ``.`` or space; mid-word only for a name without them."""
    if len(name) <= longest:
        return name
    words = re.split(r"(?<=[-_. ])", name)  # each word keeps the separator after it
    room = longest - 1
    tail, last = "", len(words)
    while last > 1 and len(tail) + len(words[last - 1]) <= room // 2:
        last -= 1
        tail = words[last] + tail
    head = ""
    for word in words[:last]:
        if len(head) + len(word) + len(tail) > room:
            break
        head += word
    if not head or not tail:
        cut = max(8, longest // 3)
        return f"{name[:longest - cut - 1]}…{name[-cut:]}"
    return f"{head}…{tail}"


def table_chars(rows: list[dict]) -> int:
    """How wide ``rows`` draw, in characters: each column as wide as its widest cell or
    header, plus its padding."""
    if not rows:
        return 0
    return sum(max(len(str(column)), *(len(str(row.get(column, ""))) for row in rows))
               + CELL_PADDING_CHARS for column in rows[0])


def markdown_image(png: bytes, alt: str) -> str:
    """A PNG inline in Markdown (a ``data:`` URI)."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})\n"


def markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table of already formatted cells (``|`` escaped)."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    return (["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
            + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])
