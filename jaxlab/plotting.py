"""Figures: the lesson's loss | accuracy plot for one run, and bands over seeds for many."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def plot_history(history: Mapping[str, Sequence[float]], path: str | os.PathLike) -> None:
    """The lesson's 1x2 figure: loss and accuracy, training blue, validation red."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, title in zip(axes, ("loss", "accuracy"), ("Loss", "Accuracy"), strict=True):
        ax.plot(epochs, history[metric], "b-o", markersize=3, label=f"Training {metric}")
        ax.plot(epochs, history[f"val_{metric}"], "r-o", markersize=3, label=f"Validation {metric}")
        ax.set_title(f"Training and validation {title.lower()}")
        ax.set_xlabel("Epochs")
        ax.set_ylabel(title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bands(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    path: str | os.PathLike,
    band: str = "std",
    title: str | None = None,
) -> None:
    """Mean lines and spread bands, one colour per configuration, in the lesson's layout.

    Args:
      curves: ``{label: {metric: array[seed, epoch]}}`` for the four lesson metrics; NaN
        entries (diverged models) are ignored.
      band: ``"std"`` (mean +- one standard deviation) or ``"minmax"``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, metrics) in enumerate(curves.items()):
        colour = colours[index % len(colours)]
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            for prefix, style in (("", "--"), ("val_", "-")):
                values = np.asarray(metrics[f"{prefix}{metric}"], float)
                epochs = np.arange(1, values.shape[-1] + 1)
                mean = np.nanmean(values, axis=0)
                if band == "minmax":
                    low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
                else:
                    spread = np.nanstd(values, axis=0)
                    low, high = mean - spread, mean + spread
                name = f"{label} ({'validation' if prefix else 'training'})"
                ax.plot(epochs, mean, style, color=colour, label=name)
                ax.fill_between(epochs, low, high, color=colour, alpha=0.2, linewidth=0)
    loss_means = [
        np.nanmean(np.asarray(m[k], float), axis=0)
        for m in curves.values()
        for k in ("loss", "val_loss")
    ]
    low, high = np.nanmin(loss_means), np.nanmax(loss_means)
    if low > 0 and high / low > 30:  # one bad configuration would flatten the others
        axes[0].set_yscale("log")
    for ax, metric in zip(axes, ("Loss", "Accuracy"), strict=True):
        ax.set_title(f"{metric}: mean and {'min-max' if band == 'minmax' else '±1 std'} band")
        ax.set_xlabel("Epochs")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True)
    axes[1].legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_against(
    curves: Mapping[str, Mapping[str, np.ndarray]],
    path: str | os.PathLike,
    metric: str = "val_loss",
    title: str | None = None,
    log_x: Sequence[str] = (),
) -> None:
    """One panel per x-axis: ``metric`` (mean over seeds, ±1 std band) against it.

    Args:
      curves: ``{label: {metric: array[seed, epoch], x_name: array[epoch], ...}}``; every key
        other than ``metric`` is an x-axis (e.g. epochs, updates, seconds).
      log_x: the x-axes to draw on a log scale.
    """
    x_names = [name for name in next(iter(curves.values())) if name != metric]
    fig, axes = plt.subplots(1, len(x_names), figsize=(5.2 * len(x_names), 4.5), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (label, series) in enumerate(curves.items()):
        values = np.asarray(series[metric], float)
        mean, spread = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        for ax, x_name in zip(axes[0], x_names, strict=True):
            x = np.asarray(series[x_name], float)
            colour = colours[index % len(colours)]
            ax.plot(x, mean, "-o", markersize=2.5, color=colour, label=label)
            ax.fill_between(x, mean - spread, mean + spread, color=colour, alpha=0.2, lw=0)
    for ax, x_name in zip(axes[0], x_names, strict=True):
        ax.set_xlabel(x_name)
        ax.set_ylabel(metric)
        ax.set_xscale("log" if x_name in log_x else "linear")
        ax.grid(True)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
