"""Production accuracy as a picture: each version's weeks beside its gate accuracy, and
the champion's scripts beside theirs. Drawn from ``version_figures`` only."""

from __future__ import annotations

from tasks.charts import (
    FLAGGED_COLOR,
    WEEKS_PAD,
    draw_accuracy_weeks,
    png_bytes,
    pyplot,
    time_axis,
)
from tasks.late_labels.figures import AccuracyLimits, script_label


def draw_scripts(ax, version: str, figures: dict) -> None:
    """One version's accuracy per main script of the reviews (bars, with their review
    counts) beside its gate accuracy on the same scripts (black ticks)."""
    scripts = figures["scripts"]
    names = [f"{script_label(s['script'])}\n{s['rows']:,} reviews" for s in scripts]
    accuracy = [s["accuracy"] for s in scripts]
    colors = [FLAGGED_COLOR if s["dropped"] else "C0" for s in scripts]
    ax.bar(range(len(scripts)), accuracy, color=colors, width=0.6)
    for index, found in enumerate(scripts):
        if found["gate_accuracy"] is not None:
            ax.plot([index - 0.35, index + 0.35], [found["gate_accuracy"]] * 2, color="black",
                    linewidth=2)
    ax.set_xticks(range(len(scripts)), names, fontsize=8)
    ax.set_ylim(0, 1.0)
    ax.set_title(f"{version}: per main script\n(bars: late labels; black: gate; red: dropped)",
                 fontsize=9)
    ax.grid(alpha=0.3, axis="y")


def plot_production_accuracy(versions: dict[str, dict], champion: str | None,
                             limits: AccuracyLimits) -> bytes:
    """The picture of a measurement as PNG bytes: weeks on the left, the champion's (or
    else the most measured version's) scripts on the right."""
    plt = pyplot()
    figure, (weeks, scripts) = plt.subplots(1, 2, figsize=(11, 4),
                                            gridspec_kw={"width_ratios": [2, 1]})
    time_axis(weeks, draw_accuracy_weeks(weeks, versions, champion, limits.max_drop,
                                         limits.min_rows), WEEKS_PAD)
    weeks.set_title("per week the review was scored\n(dashed: gate accuracy; hollow: fewer "
                    f"than {limits.min_rows:,} reviews, not judged; red x: dropped)", fontsize=9)
    weeks.legend(fontsize=7, loc="lower left")
    main = champion if champion in versions else max(versions, key=lambda v: versions[v]["rows"])
    draw_scripts(scripts, main, versions[main])
    figure.suptitle("reviewflow: production accuracy on late labels")
    figure.tight_layout()
    return png_bytes(figure)
