"""Training curves as the seed material plots them: training against validation per epoch."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on workers
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: dict[str, list[float]], path: Path, title: str) -> Path:
    """Loss and accuracy per epoch, training (dots) against validation (line)."""
    epochs = range(1, len(history["loss"]) + 1)
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for axes, metric in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        axes.plot(epochs, history[metric], "bo", label=f"Training {metric}")
        axes.plot(epochs, history[f"val_{metric}"], "b", label=f"Validation {metric}")
        axes.set_xlabel("Epochs")
        axes.set_ylabel(metric.capitalize())
        axes.set_title(f"Training and validation {metric}")
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
