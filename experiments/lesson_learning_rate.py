"""1-3 Learning rate and epochs: a learning-rate grid from 1e-4 to 1e-1, vmapped, 5 seeds.

The lesson: the smaller the learning rate, the more epochs to reach the loss minimum; too small
may stall; too large oscillates or diverges.

    python experiments/lesson_learning_rate.py            # 7 rates x 5 seeds, 20 epochs
    python experiments/lesson_learning_rate.py --quick    # seconds
"""

from __future__ import annotations

import argparse

import numpy as np

from jaxlab import lesson
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
TECHNIQUE = "1-3 learning rate"


def build_parser() -> argparse.ArgumentParser:
    out = lesson.parser(__doc__.split("\n\n")[0])
    out.add_argument("--optimizer", default="rmsprop")
    return out


def judge(result: SweepResult) -> list[lesson.Claim]:
    rows = {row["learning_rate"]: row for row in result.summary()}
    healthy = [rate for rate in RATES if "epoch_min_val_loss_mean" in rows[rate]]
    epochs_to_min = [rows[rate]["epoch_min_val_loss_mean"] for rate in healthy]
    rho = lesson.spearman(np.log(healthy), epochs_to_min)
    smallest, default, largest = RATES[0], 1e-3, RATES[-1]
    epochs = result.histories["loss"].shape[-1]
    slow = rows[smallest]
    diverged_large = rows[largest]["diverged"]
    rises_large = lesson.loss_rises(result, {"learning_rate": largest})
    rises_default = lesson.loss_rises(result, {"learning_rate": default})
    return [
        lesson.Claim(
            TECHNIQUE,
            "The smaller the learning rate, the more epochs to the minimum validation loss.",
            "epochs to min val_loss by rate: "
            + ", ".join(f"{r:g}: {e:.1f}" for r, e in zip(healthy, epochs_to_min, strict=True))
            + f"; Spearman(rate, epochs) = {rho:.2f}",
            rho < -0.5,
        ),
        lesson.Claim(
            TECHNIQUE,
            "Too small a rate stalls: far from the minimum after the same epochs.",
            f"lr {smallest:g}: min val_loss {slow['min_val_loss_mean']:.3f} at epoch "
            f"{slow['epoch_min_val_loss_mean']:.1f} of {epochs}, vs "
            f"{rows[default]['min_val_loss_mean']:.3f} at lr {default:g}",
            slow["epoch_min_val_loss_mean"] >= epochs - 1
            and slow["min_val_loss_mean"] > rows[default]["min_val_loss_mean"] + 0.02,
        ),
        lesson.Claim(
            TECHNIQUE,
            "Too large a rate oscillates or diverges.",
            f"lr {largest:g}: {diverged_large}/{len(result.values('seed'))} seeds diverged, "
            f"training loss rose in {rises_large:.1f} epochs on average "
            f"(lr {default:g}: {rises_default:.1f})",
            diverged_large > 0 or rises_large > rises_default + 1,
        ),
    ]


def run(args: argparse.Namespace) -> None:
    this = lesson.Run.from_args("lesson_learning_rate", args)
    result = this.sweep(
        args, TrainConfig(optimizer=args.optimizer), {"learning_rate": RATES}, "learning_rate"
    )
    this.finish({"learning_rate": result}, judge(result), f"1-3 learning rate ({args.optimizer})")


if __name__ == "__main__":
    lesson.main(build_parser, run)
