"""A version's pictures, drawn from its metrics.json record and nothing else, so every
figure on them is the figure of the same name in metrics.json, the run summary, the
artifacts and the model card:

- ``plot_training_curves`` (curves.png): loss and accuracy per epoch of the first
  training run, on the training rows and on the selection rows (early stopping's), with
  the kept epoch and the epoch cap marked and the gate accuracy of the candidate and of
  the champion drawn; beside them, each slice of the gate rows. The title names the
  version, the architecture and the rows of each part.
- ``plot_reliability`` (reliability.png): the reliability diagram of the candidate's
  (and the champion's) scores on the gate rows (``tasks.training.calibration``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on workers
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from tasks.charts import drawable  # noqa: E402
from tasks.training.slices import SCRIPT_KIND  # noqa: E402

CANDIDATE_COLOR, CHAMPION_COLOR, TRAINING_COLOR = "tab:blue", "tab:gray", "tab:orange"
REFUSED_COLOR, SMALL_COLOR = "tab:red", "tab:olive"


def curves_title(metrics: dict) -> str:
    """The version, its architecture and the rows of each part of the split."""
    parts = metrics.get("parts", {})
    rows = ", ".join(f"{parts[part]['rows']:,} {name}" for part, name in
                     (("train", "training"), ("selection", "selection"), ("gate", "gate"))
                     if part in parts)
    refit = (metrics.get("hyperparameters") or {}).get("refit")
    again = (f"; then refit on {refit['rows']:,} rows for {refit['epochs']} epochs"
             if refit else "")
    return (f"{metrics['version']}: {metrics['hyperparameters'].get('architecture')}, "
            f"{rows} rows{again}")


def plot_training_curves(metrics: dict, path: Path) -> Path:
    history = metrics["history"]
    epochs = list(range(1, len(history["loss"]) + 1))
    cap = metrics["hyperparameters"].get("epochs") or len(epochs)
    kept = metrics.get("best_epoch")
    slices = metrics.get("slices") or []
    # The curves side by side with their legend; the slices below, as tall as they need.
    figure = plt.figure(figsize=(14, 4.6 + 0.62 * max(len(slices), 2)))
    grid = figure.add_gridspec(2, 3, height_ratios=[4.0, 0.62 * max(len(slices), 2)],
                               width_ratios=[1, 1, 0.62])
    loss_axes, accuracy_axes = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1])
    legend_axes, slice_axes = figure.add_subplot(grid[0, 2]), figure.add_subplot(grid[1, :])
    for ax, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        ax.plot(epochs, history[metric], "o", color=TRAINING_COLOR, label="on the training rows")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "-", color=CANDIDATE_COLOR,
                    label="on the selection rows (early stopping's)")
        if kept:
            ax.axvline(kept, color="black", linestyle="--", linewidth=1,
                       label=f"kept epoch {kept}")
        ax.axvline(cap, color="black", linestyle=":", linewidth=1,
                   label=f"epoch cap {cap}")
        ax.set_xlim(0.5, max(cap, len(epochs)) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (the first training run, which chose the epochs)")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch")
        ax.grid(alpha=0.3)
    candidate = (metrics.get("validation") or {}).get("accuracy")
    champion = ((metrics.get("compared_to") or {}).get("champion_validation") or {}
                ).get("accuracy")
    gate_rows = (metrics.get("validation") or {}).get("rows")
    if candidate is not None:
        accuracy_axes.axhline(candidate, color="tab:green", linewidth=2,
                              label=f"candidate (refit) on {gate_rows:,} gate rows: "
                                    f"{candidate:.4f}" if metrics["hyperparameters"].get("refit")
                              else f"candidate on {gate_rows:,} gate rows: {candidate:.4f}")
    if champion is not None:
        accuracy_axes.axhline(champion, color=CHAMPION_COLOR, linewidth=2, linestyle="-.",
                              label=f"champion on the same rows: {champion:.4f}")
    legend_axes.set_axis_off()
    legend_axes.legend(*accuracy_axes.get_legend_handles_labels(), loc="center left",
                       fontsize=9, frameon=False)
    _slice_bars(slice_axes, slices)
    figure.suptitle(curves_title(metrics))
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def _slice_bars(ax, slices: list[dict]) -> None:
    """Each slice's accuracy, candidate against champion; its label says its gate rows,
    the paired test's p-value and the guard's verdict (red: refused, olive: too small)."""
    columns = sorted({s["kind"] for s in slices} - {SCRIPT_KIND})
    ax.set_title("gate accuracy per slice (the script of each review"
                 + "".join(f"; its {column}" for column in columns) + ")")
    if not slices:
        ax.text(0.5, 0.5, "no slices recorded", ha="center", va="center")
        ax.set_axis_off()
        return
    shown = slices[::-1]  # the first slice on top
    positions = list(range(len(shown)))
    with_champion = any(s["champion_accuracy"] is not None for s in shown)
    height = 0.38 if with_champion else 0.6
    bars = [("candidate", CANDIDATE_COLOR, height / 2 if with_champion else 0.0)]
    if with_champion:
        bars.append(("champion", CHAMPION_COLOR, -height / 2))
    for who, color, offset in bars:
        found = [(p + offset, s[f"{who}_accuracy"]) for p, s in zip(positions, shown)
                 if s[f"{who}_accuracy"] is not None]
        ax.barh([y for y, _ in found], [v for _, v in found], height, color=color, label=who)
        for y, value in found:
            ax.text(value - 0.003, y, f"{value:.4f}", ha="right", va="center", fontsize=7,
                    color="white")
    labels = []
    for record in shown:
        p_value = f", p={record['p_value']:.2g}" if record.get("p_value") is not None else ""
        name = "\n".join(textwrap.wrap(drawable(record["slice"]), 30))
        labels.append(f"{name}: {record['rows']:,} rows{p_value}\n{record['verdict']}")
    ax.set_yticks(positions, labels, fontsize=8)
    for label, record in zip(ax.get_yticklabels(), shown):
        verdict = record["verdict"]
        label.set_color(REFUSED_COLOR if verdict.startswith(("significantly", "worse")) else
                        SMALL_COLOR if verdict.startswith("too small") else "black")
    # From 0, so that a bar's length is its accuracy and two bars compare by length.
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("accuracy on the slice's gate rows")
    ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)


def plot_reliability(metrics: dict, path: Path) -> Path:
    """The share of positive reviews against the mean score in each score bin, for the
    candidate and the champion; below, the gate rows in each bin."""
    calibration = metrics.get("calibration") or {}
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.4), height_ratios=[3, 1],
                                         sharex=True)
    top.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle=":",
             label="perfectly calibrated")
    for who, color, style in (("candidate", CANDIDATE_COLOR, "o-"),
                              ("champion", CHAMPION_COLOR, "s--")):
        found = calibration.get(who)
        if not found:
            continue
        bins = [b for b in found["bins"] if b["rows"]]
        error = found["expected_calibration_error"]
        top.plot([b["mean_score"] for b in bins], [b["positive_share"] for b in bins], style,
                 color=color, label=f"{who}: expected calibration error {error:.4f}")
        width = 1 / max(len(found["bins"]), 1)
        pair = calibration.get("champion") is not None  # two bars a bin, side by side
        offset = (-width / 4 if who == "candidate" else width / 4) if pair else 0.0
        bottom.bar([(b["lower"] + b["upper"]) / 2 + offset for b in found["bins"]],
                   [b["rows"] for b in found["bins"]], width / 2 if pair else width * 0.8,
                   color=color, label=who)
    candidate = calibration.get("candidate")
    top_bin = candidate["bins"][-1] if candidate else None
    if top_bin and top_bin["rows"]:
        top.text(0.98, 0.04, f"candidate, scored {top_bin['lower']:.1f} or more: "
                             f"{top_bin['positive_share']:.1%} positive\n"
                             f"({top_bin['rows']:,} gate rows)",
                 ha="right", va="bottom", fontsize=8, transform=top.transAxes)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    bottom.set_xticks([k / 10 for k in range(11)])
    top.set_ylabel("share of positive reviews")
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    top.set_title(f"{metrics['version']}: calibration on the gate rows "
                  f"({calibration.get('bins', '?')} score bins)", fontsize=10)
    bottom.set_xlabel("score (points: the mean score of each bin; bars: the rows of each bin)")
    bottom.set_ylabel("gate rows")
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
