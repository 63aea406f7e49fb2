"""The scoring runs of ``monitoring/``: each run's figures (``run_figures``) and the
picture of them over time (``plot_trends``, ``monitoring/_trends.png``).

A run's figures are those of its run summary: ``signals`` over the sum of its files'
counts (the ``counts`` column), so ``score_psi`` is the PSI of all the run's scores
against the reference, not an average of its files' PSIs, and the unknown-token rate is
unknown tokens over tokens. Rows written before the counts were kept have none: their
run is drawn from its files' figures weighted by rows (``exact`` False), said in
docs/monitoring.md.
"""

from __future__ import annotations

import numpy as np

from tasks.charts import (
    FLAGGED_COLOR,
    THRESHOLD_STYLE,
    WEEKS_PAD,
    draw_accuracy_weeks,
    legend,
    png_bytes,
    pyplot,
    time_axis,
    time_limits,
    y_limits,
)
from tasks.monitoring.drift_signals import MonitorCounts, Thresholds, signals
from tasks.monitoring.profiles import known_scripts
from tasks.monitoring.text import SCRIPT_NAMES, SCRIPTS

RUN_SIGNALS = ("oov_rate", "length_psi", "score_psi", "script_shift", "positive_share",
               "accuracy")
# How a run of rows without counts weighs its files' figures (the nearest to the summary's).
FALLBACK_WEIGHTS = {"oov_rate": "sampled_rows", "script_shift": "sampled_rows",
                    "accuracy": "labeled_rows", "length_psi": "rows", "score_psi": "rows",
                    "positive_share": "rows"}
SCRIPT_COLORS = dict(zip(SCRIPTS, ("C0", "C1", "C2", "C4", "C5")))


def run_figures(frame, profiles: dict[str, dict | None]) -> list[dict]:
    """One dict per scoring run in ``frame`` (a pandas DataFrame of ``monitoring/`` rows),
    oldest first: ``model_version``, ``run_started``, ``flow_run_id``, ``files``,
    ``files_flagged``, ``flags`` (each signal some file was flagged for), the
    ``RUN_SIGNALS``, ``letter_shares`` and ``review_shares`` (per script) and
    ``by_script`` (per script: ``tasks.monitoring.drift_signals.script_figures``), as
    ``signals`` gives them for the run's summed counts; ``profiles`` maps each version
    to its reference profile (None without one)."""
    runs = []
    for (version, started), rows in frame.groupby(["model_version", "run_started"], sort=True):
        records = rows["counts"].tolist() if "counts" in rows else []
        exact = bool(records) and all(record is not None for record in records)
        flags = sorted({flag for found in rows["flags"] for flag in found})
        run = {"model_version": version, "run_started": started,
               "flow_run_id": rows["flow_run_id"].iloc[0], "files": len(rows),
               "files_flagged": int(sum(len(found) > 0 for found in rows["flags"])),
               "flags": flags, "exact": exact}
        if exact:
            counts = MonitorCounts()
            for record in records:
                counts.add(MonitorCounts.from_record(record))
            found = signals(counts, profiles.get(version))
            run.update({name: found[name] for name in RUN_SIGNALS},
                       rows=found["rows"], labeled_rows=found["labeled_rows"],
                       letter_shares=found["script_mix"], review_shares=found["review_shares"],
                       by_script=found["by_script"])
        else:
            run.update({name: _weighted(rows, name) for name in RUN_SIGNALS},
                       rows=int(rows["rows"].sum()), labeled_rows=int(rows["labeled_rows"].sum()),
                       letter_shares={s: _weighted(rows, f"share_{s}", "sampled_rows")
                                      for s in SCRIPTS},
                       review_shares=None, by_script={})
        runs.append(run)
    return runs


def _weighted(rows, column: str, weight: str | None = None) -> float | None:
    """The files' ``column`` averaged by ``weight`` (``FALLBACK_WEIGHTS``), None if none."""
    if column not in rows:
        return None
    weight = weight or FALLBACK_WEIGHTS[column]
    known = rows[[column, weight]].dropna()
    known = known[known[weight] > 0]
    if known.empty:
        return None
    return round(float(np.average(known[column], weights=known[weight])), 4)


def learned_scripts(profiles: dict[str, dict | None]) -> list[str]:
    """The scripts any of the versions learned from, in ``SCRIPTS`` order."""
    found = set()
    for profile in profiles.values():
        found |= known_scripts(profile) or set()
    return [script for script in SCRIPTS if script in found]


# ---------------------------------------------------------------- the picture
PANELS = (  # (signal, title, threshold attribute of Thresholds or None)
    ("oov_rate", "unknown-token rate (oov_rate)", "max_oov_rate"),
    ("script_shift", "reviews in scripts not learned (script_shift)", "max_script_shift"),
    ("score_psi", "score PSI (score_psi)", "max_psi"),
    ("length_psi", "length PSI (length_psi)", "max_psi"),
    ("review_shares", "share of reviews by main script", None),
    ("positive_share", "share predicted positive (positive_share)", None),
)
PER_LANGUAGE = {"oov_rate", "positive_share"}  # drawn per script too, from ``by_script``


def plot_trends(runs: list[dict], path, profiles: dict[str, dict | None],
                thresholds: Thresholds, production: dict | None = None):
    """``trends_figure`` as a PNG written to ``path`` (a local path or an ``ObjectPath``)."""
    figure = trends_figure(runs, profiles, thresholds, production)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(figure))  # one write: a local file or an object (s3://…) alike
    return path


def trends_figure(runs: list[dict], profiles: dict[str, dict | None], thresholds: Thresholds,
                  production: dict | None = None):
    """``run_figures``' runs over time as a matplotlib figure: a panel per signal,
    its threshold drawn and in view, a red ring on each run that had a file flagged for
    it, a dotted line where the model version changed, a line per script the versions
    learned from where they learned several, and an accuracy panel with the live
    accuracy on labeled rows of scored files and, from ``production`` (``champion``,
    ``versions``: ``tasks.late_labels.version_figures`` per version, ``max_drop``,
    ``min_rows``), the production accuracy on late labels per week beside the gate
    accuracy."""
    import pandas as pd

    plt = pyplot()
    languages = learned_scripts(profiles)
    per_language = len(languages) > 1
    figure, grid = plt.subplots(4, 2, figsize=(12, 12.5))
    axes, (accuracy_ax, late_ax) = list(grid[:3].flat), grid[3]
    times = pd.to_datetime(pd.Series([run["run_started"] for run in runs]), utc=True)
    limits = time_limits(times)
    for ax, (signal, title, limit_name) in zip(axes, PANELS):
        threshold = getattr(thresholds, limit_name) if limit_name else None
        if signal == "review_shares":
            _draw_shares(ax, runs, times, languages)
        else:
            values = [run[signal] for run in runs]
            _draw_signal(ax, times, values, runs, signal)
            if per_language and signal in PER_LANGUAGE:
                values += _draw_languages(ax, runs, times, signal, languages)
            if signal == "positive_share":
                values += _draw_reference(ax, runs, times, profiles, "positive_share", limits)
            y_limits(ax, values, threshold)
        if threshold is not None:
            ax.axhline(threshold, **THRESHOLD_STYLE, label="threshold: a file above it is flagged")
            title += f", threshold {threshold:g}" + (" + each file's sampling noise"
                                                     if limit_name == "max_psi" else "")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        _mark_versions(ax, runs, times)
    _draw_accuracy(accuracy_ax, runs, times, profiles, thresholds, limits)
    _draw_late_labels(late_ax, production)
    for ax in [*axes, accuracy_ax]:
        time_axis(ax, times)
    figure_legend(figure, [*axes, accuracy_ax])
    versions = sorted({run["model_version"] for run in runs}
                      | set((production or {}).get("versions", {})))
    figure.suptitle(f"reviewflow: {len(runs)} scoring run{'s' * (len(runs) != 1)}, model "
                    f"version{'s' * (len(versions) != 1)} {', '.join(versions)}", fontsize=11,
                    y=0.995)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    return figure


def figure_legend(figure, axes) -> None:
    """One legend for the drift panels, above them: each label once."""
    found: dict = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        for handle, label in zip(handles, labels):
            found.setdefault(label, handle)
    if found:
        figure.legend(found.values(), found.keys(), loc="upper center", ncols=4, fontsize=7,
                      bbox_to_anchor=(0.5, 0.972), frameon=False)


def _draw_signal(ax, times, values, runs, signal: str) -> None:
    """The runs' figure (black line, points), a red ring where a file was flagged for it."""
    known = [(t, v) for t, v in zip(times, values) if v is not None]
    if known:
        ax.plot([t for t, _ in known], [v for _, v in known], color="black", marker="o",
                markersize=4, linewidth=1.2, label="run (all its files)")
    flagged = [(t, v) for t, v, run in zip(times, values, runs)
               if v is not None and signal in run["flags"]]
    if flagged:
        ax.scatter([t for t, _ in flagged], [v for _, v in flagged], s=110, facecolors="none",
                   edgecolors=FLAGGED_COLOR, linewidths=2, zorder=4,
                   label="a file of the run was flagged")


def _draw_languages(ax, runs, times, signal: str, languages: list[str]) -> list:
    values = []
    for script in languages:
        points = [(t, run["by_script"].get(script, {}).get(signal))
                  for t, run in zip(times, runs)]
        points = [(t, v) for t, v in points if v is not None]
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], color=SCRIPT_COLORS[script],
                    linewidth=1, marker=".", label=f"{SCRIPT_NAMES[script]} reviews")
            values += [v for _, v in points]
    return values


def _draw_shares(ax, runs, times, languages: list[str]) -> None:
    shown = [s for s in SCRIPTS if s in languages or any(
        (run["review_shares"] or {}).get(s) for run in runs)]
    for script in shown:
        points = [(t, (run["review_shares"] or {}).get(script)) for t, run in zip(times, runs)]
        points = [(t, v) for t, v in points if v is not None]
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], color=SCRIPT_COLORS[script],
                    marker="o", markersize=4, label=f"{SCRIPT_NAMES[script]} reviews")
    ax.set_ylim(-0.02, 1.02)


def _segments(runs, times, limits) -> list[tuple[str, object, object]]:
    """``(version, from, to)``: the stretch of the x-axis each version's runs cover, from
    its first run (the axis' left end for the first) to the next version's first run
    (the right end for the last)."""
    starts = []
    for t, run in zip(times, runs):
        if not starts or starts[-1][0] != run["model_version"]:
            starts.append((run["model_version"], t))
    if not starts or limits is None:
        return []
    ends = [t for _, t in starts[1:]] + [limits[1]]
    return [(version, limits[0] if index == 0 else start, end)
            for index, ((version, start), end) in enumerate(zip(starts, ends))]


def _draw_reference(ax, runs, times, profiles, key: str, limits, drop: float = 0.0) -> list:
    """Each version's reference figure (its profile's held-out rows) dotted over its
    stretch of the axis, and ``drop`` below it (the flag line) dashed grey."""
    values = []
    for version, start, end in _segments(runs, times, limits):
        profile = profiles.get(version) or {}
        value = (profile.get("score") or {}).get(key) if key == "positive_share" \
            else profile.get(key)
        if value is None:
            continue
        ax.hlines(value, start, end, colors="black", linestyles=":",
                  label=f"{version}: held-out rows")
        values.append(value)
        if drop:
            ax.hlines(value - drop, start, end, **{k: v for k, v in THRESHOLD_STYLE.items()
                                                     if k != "linestyle"}, linestyles="--",
                      label=f"flagged below {value - drop:.3f}")
            values.append(value - drop)
    return values


def _mark_versions(ax, runs, times) -> None:
    """A dotted vertical line, named, where a run used another model version than the one before."""
    previous = None
    for t, run in zip(times, runs):
        if previous is not None and run["model_version"] != previous:
            ax.axvline(t, color="#9467bd", linestyle=":", linewidth=1)
            ax.annotate(run["model_version"], (t, 1), xycoords=("data", "axes fraction"),
                        fontsize=6, rotation=90, va="top", ha="right", color="#9467bd")
        previous = run["model_version"]


def _draw_accuracy(ax, runs, times, profiles, thresholds: Thresholds, limits) -> None:
    """Live accuracy per run beside the held-out accuracy it is flagged against."""
    values = [run["accuracy"] for run in runs]
    _draw_signal(ax, times, values, runs, "accuracy")
    values += _draw_reference(ax, runs, times, profiles, "accuracy", limits,
                              drop=thresholds.max_accuracy_drop)
    y_limits(ax, values, floor=None, ceiling=1.01)
    ax.set_title("live accuracy, on the labeled rows of scored files (accuracy)", fontsize=9)
    ax.grid(alpha=0.3)
    _mark_versions(ax, runs, times)


def _draw_late_labels(ax, production: dict | None) -> None:
    """The late labels' accuracy per week scored beside the gate accuracy, or a note
    that none has arrived."""
    versions = (production or {}).get("versions")
    if not versions:
        ax.text(0.5, 0.5, "no late label matches a scored review yet\n(labeled/ against "
                "scored/, by review_id)", ha="center", va="center", transform=ax.transAxes,
                fontsize=9, color="#7f7f7f")
        ax.set_axis_off()
        return
    weeks = draw_accuracy_weeks(ax, versions, production.get("champion"),
                                production["max_drop"], production["min_rows"])
    time_axis(ax, weeks, WEEKS_PAD)
    ax.set_title("production accuracy on late labels, per week scored\n(dashed: gate "
                 "accuracy; hollow: too few reviews to judge; red x: dropped)", fontsize=9)
    legend(ax, loc="best")
