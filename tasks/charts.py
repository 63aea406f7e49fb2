"""What every reviewflow picture shares: matplotlib without a display, a time axis that
fits one point as well as hundreds, y-limits that keep a threshold in view, and the PNG.

Imports matplotlib only inside its functions: a command that draws nothing never loads it.
"""

from __future__ import annotations

import io
from datetime import timedelta

FLAGGED_COLOR = "#d62728"
THRESHOLD_STYLE = {"color": "#7f7f7f", "linestyle": "--", "linewidth": 1}
DPI = 90


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def drawable(text: str) -> str:
    """``text`` (a file name, a slice's value: the user's words) with each character the
    pictures' font has no glyph for written as ``\\uXXXX``: matplotlib would draw an
    empty box, the same for every such character, so two Korean file names would look
    alike. The full names are in the run's tables and records."""
    glyphs = _font_characters()
    return "".join(c if ord(c) in glyphs or c in "\n\t" else f"\\u{ord(c):04x}" for c in text)


def _font_characters() -> frozenset[int]:
    """The code points the default font of the pictures can draw."""
    pyplot()
    from matplotlib import font_manager, ft2font

    path = font_manager.findfont(font_manager.FontProperties())
    return frozenset(ft2font.FT2Font(path).get_charmap())


RUNS_PAD = timedelta(minutes=2)  # runs come minutes apart
WEEKS_PAD = timedelta(days=4)  # a point per week


def time_limits(moments, least_pad: timedelta = RUNS_PAD):
    """The x-limits that fit ``moments``: their span and 8% of it on each side, at least
    ``least_pad`` (one run, or runs minutes apart, would otherwise be spread by
    matplotlib over years); None for no moments."""
    import pandas as pd

    times = pd.to_datetime(pd.Series(list(moments)), utc=True)
    if times.empty:
        return None
    first, last = times.min(), times.max()
    pad = max((last - first) * 0.08, least_pad)
    return first - pad, last + pad


def time_axis(ax, moments, least_pad: timedelta = RUNS_PAD) -> None:
    """Dates on ``ax``'s x-axis over ``time_limits(moments, least_pad)``, with concise ticks."""
    import matplotlib.dates as mdates

    limits = time_limits(moments, least_pad)
    if limits is None:
        return
    ax.set_xlim(*limits)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def y_limits(ax, values, threshold: float | None = None, floor: float | None = 0.0,
             ceiling: float | None = None) -> None:
    """y-limits from ``floor`` (0 for a rate or an index) to above the highest of the
    values and ``threshold``, so a threshold is always in view and a change far below it
    looks as small as it is."""
    found = [v for v in values if v is not None and v == v]
    top = max([*found, threshold or 0.0, 1e-3])
    bottom = floor if floor is not None else min([*found, threshold or top])
    margin = (top - bottom) * 0.08 or 0.01
    high = top + margin if ceiling is None else min(ceiling, top + margin)
    ax.set_ylim(bottom if floor is not None else bottom - margin, high)


def legend(ax, **options) -> None:
    """``ax``'s legend with each label once (a line drawn per version repeats its label)."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=7, **options)


def png_bytes(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    plt = pyplot()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=DPI)
    plt.close(figure)
    return image.getvalue()


MOST_VERSIONS = 4  # versions drawn in one accuracy panel: the champion, then the most measured


def draw_accuracy_weeks(ax, versions: dict[str, dict], champion: str | None, max_drop: float,
                        min_rows: int, colors: dict[str, str] | None = None) -> list:
    """Each version's production accuracy per week (``tasks.late_labels.version_figures``:
    its ``weeks`` and ``gate_accuracy``) on ``ax``: a line per version, a filled marker
    where the week has the ``min_rows`` reviews to be judged and a hollow one where not,
    the gate accuracy dashed in the version's colour, a red cross on each week that
    dropped. Returns the weeks drawn (for the caller's time axis)."""
    import pandas as pd

    shown = sorted(versions, key=lambda v: (v != champion, -versions[v]["rows"]))[:MOST_VERSIONS]
    weeks, values = [], []
    for index, version in enumerate(shown):
        found = versions[version]
        color = (colors or {}).get(version, f"C{index}")
        points = pd.DataFrame(found["weeks"])
        if points.empty:
            continue
        points["week"] = pd.to_datetime(points["week"], utc=True)
        label = f"{version}{' (champion)' if version == champion else ''}: late labels"
        ax.plot(points["week"], points["accuracy"], color=color, label=label, linewidth=1.5)
        judged = points["rows"] >= min_rows
        ax.scatter(points.loc[judged, "week"], points.loc[judged, "accuracy"], color=color,
                   zorder=3)
        ax.scatter(points.loc[~judged, "week"], points.loc[~judged, "accuracy"],
                   facecolors="white", edgecolors=color, zorder=3)
        gate = found["gate_accuracy"]
        if gate is not None:
            ax.axhline(gate, color=color, linestyle="--", linewidth=1)
            values.append(gate - max_drop)
        dropped = points[points["dropped"]]
        ax.scatter(dropped["week"], dropped["accuracy"], marker="x", s=80, color=FLAGGED_COLOR,
                   zorder=4)
        weeks += list(points["week"])
        values += list(points["accuracy"])
    low = min(values, default=0.5)
    ax.set_ylim(max(0.0, min(low, 0.5) - 0.05), 1.01)  # a gate accuracy of 1 stays in view
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    return weeks
