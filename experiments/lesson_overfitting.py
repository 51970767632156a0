"""2 Under- and overfitting: too small (4-4), the lesson's (16-16) and too big (512-512)
networks (10 epochs), and the remedies on the lesson's network (20 epochs): L2 0.001, dropout
0.5, and early stopping that restores the best epoch; 5 seeds each.

The claims are Chollet's (Deep Learning with Python, 4.4): the smaller network starts
overfitting later and degrades more slowly; the bigger one overfits almost at once and its
validation loss is noisier; L2 is much more resistant to overfitting; dropout is a clear
improvement.

    python experiments/lesson_overfitting.py
    python experiments/lesson_overfitting.py --quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from jaxlab import lesson, results
from jaxlab.errors import ConfigError
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

SIZES = [(4, 4), (16, 16), (512, 512)]
TECHNIQUE = "2 under/overfitting"


def build_parser() -> argparse.ArgumentParser:
    out = lesson.parser(__doc__.split("\n\n")[0])
    out.add_argument(
        "--capacity-epochs",
        type=int,
        default=10,
        help="epochs of the three networks (default 10: the 512-unit one costs ~4 s per "
        "model-epoch on 2 CPU cores and overfits within 2 epochs)",
    )
    out.add_argument(
        "--capacity-from",
        default=None,
        metavar="DIR",
        help="reuse a lesson_capacity.py run's 'capacity' folder instead of training the three "
        "networks again (it must hold 4-4, 16-16 and 512-512)",
    )
    return out


def reused_capacity(path: str) -> SweepResult:
    """A capacity sweep saved by lesson_capacity.py, checked to hold the networks needed."""
    try:
        result = SweepResult.load(path)
    except FileNotFoundError:
        raise ConfigError(f"--capacity-from: no saved sweep in {path}") from None
    if "hidden" not in result.names:
        raise ConfigError(f"--capacity-from: {path} is not a sweep over hidden layer sizes")
    status = results.run_status(Path(path).parent)
    if not result.meta.get("complete", status == "complete"):
        raise ConfigError(
            f"--capacity-from: the sweep in {path} is incomplete (its run is {status}); "
            "resume it with --resume or use a finished one"
        )
    shapes = [tuple(shape) for shape in result.values("hidden")]
    missing = [size for size in SIZES if size not in shapes]
    if missing:
        raise ConfigError(f"--capacity-from: {path} lacks the networks {missing}")
    return result


def noise(result: SweepResult, config: dict) -> float:
    """Mean absolute epoch-to-epoch change of the validation loss after its minimum."""
    val_loss = result.select(config)["val_loss"]
    changes = []
    for curve in val_loss[~np.isnan(val_loss).any(axis=1)]:
        after = curve[int(np.argmin(curve)) :]
        if len(after) > 2:  # remove the trend, keep the wiggle
            trend = np.polyval(np.polyfit(np.arange(len(after)), after, 1), np.arange(len(after)))
            changes.append(np.mean(np.abs(np.diff(after - trend))))
    return float(np.mean(changes)) if changes else float("nan")


def early_stopping(result: SweepResult, config: dict) -> tuple[float, float]:
    """val_accuracy of the restored best epoch (min val_loss) and of the last epoch."""
    curves = result.select(config)
    best = np.nanargmin(curves["val_loss"], axis=1)
    restored = curves["val_accuracy"][np.arange(len(best)), best]
    return float(np.nanmean(restored)), float(np.nanmean(curves["val_accuracy"][:, -1]))


def judge(capacity: SweepResult, remedies: SweepResult) -> list[lesson.Claim]:
    size = {tuple(row["hidden"]): row for row in capacity.summary()}
    small, lesson_net, big = size[(4, 4)], size[(16, 16)], size[(512, 512)]

    def degradation(row):
        return row["final_val_loss_mean"] - row["min_val_loss_mean"]

    remedy = {(row["l2"], row["dropout"]): row for row in remedies.summary()}
    plain, l2, dropout = remedy[(0.0, 0.0)], remedy[(0.001, 0.0)], remedy[(0.0, 0.5)]
    noise_big = noise(capacity, {"hidden": (512, 512)})
    noise_lesson = noise(capacity, {"hidden": (16, 16)})
    restored, last = early_stopping(remedies, {"l2": 0.0, "dropout": 0.0})

    def epoch(row):
        return f"{row['epoch_min_val_loss_mean']:.1f} ± {row['epoch_min_val_loss_std']:.1f}"

    return [
        lesson.Claim(
            TECHNIQUE,
            "The smaller network starts overfitting later.",
            f"epoch of min val_loss: 4-4 {epoch(small)}, 16-16 {epoch(lesson_net)}",
            small["epoch_min_val_loss_mean"] > lesson_net["epoch_min_val_loss_mean"],
        ),
        lesson.Claim(
            TECHNIQUE,
            "The smaller network degrades more slowly once it overfits.",
            f"final minus min val_loss: 4-4 {degradation(small):.3f}, "
            f"16-16 {degradation(lesson_net):.3f}",
            degradation(small) < degradation(lesson_net),
        ),
        lesson.Claim(
            TECHNIQUE,
            "The bigger network overfits almost at once.",
            f"epoch of min val_loss: 512-512 {epoch(big)}, 16-16 {epoch(lesson_net)}",
            big["epoch_min_val_loss_mean"] <= min(2.5, lesson_net["epoch_min_val_loss_mean"]),
        ),
        lesson.Claim(
            TECHNIQUE,
            "The bigger network's validation loss is noisier.",
            f"mean |change| of detrended val_loss after its minimum: 512-512 "
            f"{noise_big:.4f}, 16-16 {noise_lesson:.4f}",
            noise_big > noise_lesson,
        ),
        lesson.Claim(
            TECHNIQUE,
            "L2 (0.001) makes the network much more resistant to overfitting.",
            f"final val_loss (penalty included) {l2['final_val_loss_mean']:.3f} vs "
            f"{plain['final_val_loss_mean']:.3f} without; final val_accuracy "
            f"{l2['final_val_accuracy_mean']:.3f} vs {plain['final_val_accuracy_mean']:.3f}",
            l2["final_val_loss_mean"] < 0.8 * plain["final_val_loss_mean"],
        ),
        lesson.Claim(
            TECHNIQUE,
            "Dropout (0.5) is a clear improvement.",
            f"final val_loss {dropout['final_val_loss_mean']:.3f} vs "
            f"{plain['final_val_loss_mean']:.3f}; min val_loss "
            f"{dropout['min_val_loss_mean']:.3f} vs {plain['min_val_loss_mean']:.3f}",
            dropout["final_val_loss_mean"] < 0.8 * plain["final_val_loss_mean"]
            and dropout["min_val_loss_mean"] <= plain["min_val_loss_mean"] + 0.005,
        ),
        lesson.Claim(
            TECHNIQUE,
            "Early stopping that restores the best epoch avoids the overfit model.",
            f"val_accuracy of the restored best epoch {restored:.4f} vs the last epoch {last:.4f}",
            restored > last,
        ),
    ]


def run(args: argparse.Namespace) -> None:
    this = lesson.Run.from_args("lesson_overfitting", args)
    if args.capacity_from:
        capacity = reused_capacity(args.capacity_from)
        this.write_info(capacity_from=args.capacity_from)
    else:
        if args.capacity_epochs < 1:
            raise ConfigError(f"--capacity-epochs must be positive, got {args.capacity_epochs}")
        epochs = this.epochs if this.quick else args.capacity_epochs
        capacity = this.sweep(args, TrainConfig(), {"hidden": SIZES}, "capacity", epochs=epochs)
    remedies = this.sweep(
        args, TrainConfig(), {"l2": [0.0, 0.001], "dropout": [0.0, 0.5]}, "remedies"
    )
    sweeps = {"capacity": capacity, "remedies": remedies}
    this.finish(sweeps, judge(capacity, remedies), "2 under/overfitting")


if __name__ == "__main__":
    lesson.main(build_parser, run)
