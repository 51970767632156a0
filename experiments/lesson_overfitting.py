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
import dataclasses
from pathlib import Path

import numpy as np

from jaxlab import lesson, results, verdicts
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


def noise_per_seed(result: SweepResult, config: dict) -> np.ndarray:
    """Per seed, the mean absolute epoch-to-epoch change of the validation loss after its
    minimum, its linear trend removed; NaN if the seed diverged or has under 3 epochs there."""
    changes = []
    for curve in result.select(config)["val_loss"]:
        after = curve[int(np.argmin(curve)) :] if not np.isnan(curve).any() else []
        if len(after) > 2:  # remove the trend, keep the wiggle
            trend = np.polyval(np.polyfit(np.arange(len(after)), after, 1), np.arange(len(after)))
            changes.append(np.mean(np.abs(np.diff(after - trend))))
        else:
            changes.append(np.nan)
    return np.array(changes)


def noise(result: SweepResult, config: dict) -> float:
    """:func:`noise_per_seed`, averaged over the seeds that have it."""
    per_seed = noise_per_seed(result, config)
    return float(np.nanmean(per_seed)) if np.isfinite(per_seed).any() else float("nan")


def early_stopping_per_seed(result: SweepResult, config: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per seed, val_accuracy of the restored best epoch (min val_loss) and of the last one."""
    curves = result.select(config)
    best = np.argmin(np.where(np.isnan(curves["val_loss"]), np.inf, curves["val_loss"]), axis=1)
    restored = curves["val_accuracy"][np.arange(len(best)), best]
    return restored, curves["val_accuracy"][:, -1]


def early_stopping(result: SweepResult, config: dict) -> tuple[float, float]:
    """val_accuracy of the restored best epoch (min val_loss) and of the last epoch."""
    restored, last = early_stopping_per_seed(result, config)
    return float(np.nanmean(restored)), float(np.nanmean(last))


# Chollet, Deep Learning with Python (1st ed.), notebook 4.4, one run each (MISSION.md).
BOOK = {"16-16 final": 0.7694, "dropout final": 0.5358, "16-16 min": 0.2827, "dropout min": 0.2772}
BIG_MEANS = (
    "the minimum by epoch 2: Chollet's bigger network 'starts overfitting almost right away, "
    "after just one epoch' (his run: minimum at epoch 2, the 16-16 network's at 3)"
)
DROPOUT_MEANS = (
    "the final val_loss: Chollet calls dropout 'a clear improvement over the reference network' "
    "from the validation-loss curves over 20 epochs, which part at the end (his epoch 20: "
    f"{BOOK['dropout final']} vs {BOOK['16-16 final']}) while their minima are alike "
    f"({BOOK['dropout min']} vs {BOOK['16-16 min']})"
)


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

    def minimum(result, config):  # per seed: (min val_loss, its epoch, final val_loss)
        best, when = lesson.val_loss_minimum(result, config)
        return best, when, result.select(config)["val_loss"][:, -1]

    net = {shape: minimum(capacity, {"hidden": shape}) for shape in SIZES}
    cure = {key: minimum(remedies, {"l2": key[0], "dropout": key[1]}) for key in remedy}
    none, with_l2, with_dropout = cure[(0.0, 0.0)], cure[(0.001, 0.0)], cure[(0.0, 0.5)]
    rise = {shape: final - best for shape, (best, _, final) in net.items()}
    at_once = dataclasses.replace(
        verdicts.one_sample(
            "epoch of min val_loss, 512-512",
            net[(512, 512)][1],
            "<",
            2.5,
            "'almost at once': the minimum by epoch 2, where Chollet's bigger network has it",
        ),
        reading="the minimum by epoch 2",
    )
    sooner_than_16 = dataclasses.replace(
        verdicts.paired(
            "epoch of min val_loss, 512-512 minus 16-16",
            net[(512, 512)][1],
            net[(16, 16)][1],
            "<",
            -lesson.EPOCH_GAP,
            lesson.EPOCH_GAP_REASON,
        ),
        reading="sooner than the 16-16 network",
    )
    final_ratio = dataclasses.replace(
        verdicts.paired(
            "final val_loss, dropout 0.5 / none",
            with_dropout[2],
            none[2],
            "<",
            0.9,
            "'clear': a tenth lower, plainly visible on the curves",
            ratio=True,
        ),
        reading="final val_loss",
    )
    min_gap = dataclasses.replace(
        verdicts.paired(
            "min val_loss, dropout 0.5 minus none",
            with_dropout[0],
            none[0],
            "<",
            -lesson.LOSS_GAP,
            lesson.LOSS_GAP_REASON,
        ),
        reading="min val_loss",
    )
    kept, last_seed = early_stopping_per_seed(remedies, {"l2": 0.0, "dropout": 0.0})
    drop_pct = 100 * (1 - dropout["final_val_loss_mean"] / plain["final_val_loss_mean"])
    book_pct = 100 * (1 - BOOK["dropout final"] / BOOK["16-16 final"])
    return [
        lesson.claim(
            TECHNIQUE,
            "The smaller network starts overfitting later.",
            f"epoch of min val_loss: 4-4 {epoch(small)}, 16-16 {epoch(lesson_net)}",
            verdicts.paired(
                "epoch of min val_loss, 4-4 minus 16-16",
                net[(4, 4)][1],
                net[(16, 16)][1],
                ">",
                lesson.EPOCH_GAP,
                lesson.EPOCH_GAP_REASON,
            ),
            why=f"Epochs of the minimum: 4-4 {epoch(small)}, 16-16 {epoch(lesson_net)} "
            "(Chollet: 6 and 3).",
        ),
        lesson.claim(
            TECHNIQUE,
            "The smaller network degrades more slowly once it overfits.",
            f"final minus min val_loss: 4-4 {degradation(small):.3f}, "
            f"16-16 {degradation(lesson_net):.3f}",
            verdicts.paired(
                "final minus min val_loss, 4-4 minus 16-16",
                rise[(4, 4)],
                rise[(16, 16)],
                "<",
                -lesson.LOSS_GAP,
                lesson.LOSS_GAP_REASON,
            ),
            why=f"Final minus min val_loss: 4-4 {degradation(small):.3f}, 16-16 "
            f"{degradation(lesson_net):.3f}.",
        ),
        lesson.claim(
            TECHNIQUE,
            "The bigger network overfits almost at once.",
            f"epoch of min val_loss: 512-512 {epoch(big)}, 16-16 {epoch(lesson_net)}",
            at_once,
            [sooner_than_16],
            BIG_MEANS,
            why="The 512-512 network's minimum per seed is at epoch "
            + ", ".join(f"{e:.0f}" for e in net[(512, 512)][1])
            + " (16-16: "
            + ", ".join(f"{e:.0f}" for e in net[(16, 16)][1])
            + f"); its val_loss is noisy ({noise_big:.3f} mean wiggle after the minimum vs "
            f"{noise_lesson:.3f}), which moves the epoch of the minimum from seed to seed.",
        ),
        lesson.claim(
            TECHNIQUE,
            "The bigger network's validation loss is noisier.",
            f"mean absolute change of detrended val_loss after its minimum: 512-512 "
            f"{noise_big:.4f}, 16-16 {noise_lesson:.4f}",
            verdicts.paired(
                "mean absolute change of detrended val_loss after its minimum, 512-512 / 16-16",
                noise_per_seed(capacity, {"hidden": (512, 512)}),
                noise_per_seed(capacity, {"hidden": (16, 16)}),
                ">",
                2.0,
                "twice the lesson network's epoch-to-epoch wiggle",
                ratio=True,
            ),
            why=f"Mean wiggle after the minimum: 512-512 {noise_big:.4f}, 16-16 "
            f"{noise_lesson:.4f} (seeds with under 3 epochs after their minimum are left out).",
        ),
        lesson.claim(
            TECHNIQUE,
            "L2 (0.001) makes the network much more resistant to overfitting.",
            f"final val_loss (penalty included) {l2['final_val_loss_mean']:.3f} vs "
            f"{plain['final_val_loss_mean']:.3f} without; final val_accuracy "
            f"{l2['final_val_accuracy_mean']:.3f} vs {plain['final_val_accuracy_mean']:.3f}",
            verdicts.paired(
                "final val_loss (penalty included), L2 0.001 / none",
                with_l2[2],
                none[2],
                "<",
                0.8,
                "'much more': a fifth lower",
                ratio=True,
            ),
            why=f"Final val_loss {l2['final_val_loss_mean']:.3f} with L2 vs "
            f"{plain['final_val_loss_mean']:.3f} without (Chollet, epoch 20: 0.4200 vs 0.7694).",
        ),
        lesson.claim(
            TECHNIQUE,
            "Dropout (0.5) is a clear improvement.",
            f"final val_loss {dropout['final_val_loss_mean']:.3f} vs "
            f"{plain['final_val_loss_mean']:.3f}; min val_loss "
            f"{dropout['min_val_loss_mean']:.3f} vs {plain['min_val_loss_mean']:.3f}",
            final_ratio,
            [min_gap],
            DROPOUT_MEANS,
            why=f"Dropout lowers the final val_loss by {drop_pct:.0f}% "
            f"({dropout['final_val_loss_mean']:.3f} vs {plain['final_val_loss_mean']:.3f}; "
            f"Chollet: {book_pct:.0f}%); the minimum moves by "
            f"{dropout['min_val_loss_mean'] - plain['min_val_loss_mean']:+.3f}.",
        ),
        lesson.claim(
            TECHNIQUE,
            "Early stopping that restores the best epoch avoids the overfit model.",
            f"val_accuracy of the restored best epoch {restored:.4f} vs the last epoch {last:.4f}",
            verdicts.paired(
                "val_accuracy, restored best epoch minus last epoch",
                kept,
                last_seed,
                ">",
                0.005,
                "half a point of accuracy: 125 of the 25,000 test reviews",
            ),
            why=f"val_accuracy of the restored epoch {restored:.4f} vs the last {last:.4f}.",
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
