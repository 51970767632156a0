"""1-7 Optimizers: every registered optimizer at its (Keras) default learning rate and at 1/10
and 10x of it, 5 seeds each; one sweep per optimizer, learning rates vmapped.

The lesson: optimizers (SGD, RMSprop, Adam, ...) update the weights to minimize the loss; the
learning rate and momentum govern speed and stability. The claim checked: adaptive methods
converge faster at their defaults; the best-tuned comparison is reported beside it.

    python experiments/lesson_optimizers.py                 # 10 optimizers, 10 epochs
    python experiments/lesson_optimizers.py --optimizers sgd,adam --quick
"""

from __future__ import annotations

import argparse

import numpy as np

from jaxlab import distributed, lesson, plotting
from jaxlab.errors import ConfigError
from jaxlab.optim import OPTIMIZERS, optimizer_defaults
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

ADAPTIVE = {"adagrad", "rmsprop", "rmsprop_keras2", "adam", "adamw", "nadam"}
PLAIN = {"sgd", "momentum", "nesterov"}
TECHNIQUE = "1-7 optimizers"
EPOCHS_TO_COMPARE = 3  # "converge faster": the training loss early in training


def build_parser() -> argparse.ArgumentParser:
    out = lesson.parser(__doc__.split("\n\n")[0], epochs=10)
    out.add_argument(
        "--optimizers", default=None, help="comma-separated names (default: every registered one)"
    )
    return out


def loss_after(result: SweepResult, rate: float, epoch: int) -> float:
    """Mean training loss after ``epoch`` epochs at ``rate``; inf if any seed diverged."""
    losses = result.select({"learning_rate": rate})["loss"]
    loss = losses[:, min(epoch, losses.shape[1]) - 1]
    return float(np.mean(loss)) if np.isfinite(loss).all() else float("inf")


def judge(sweeps: dict[str, SweepResult]) -> list[lesson.Claim]:
    at_default, tuned = {}, {}
    for name, result in sweeps.items():
        default = optimizer_defaults(name)["learning_rate"]
        at_default[name] = loss_after(result, default, EPOCHS_TO_COMPARE)
        rows = [r for r in result.summary() if "min_val_loss_mean" in r]
        best = min(rows, key=lambda r: r["min_val_loss_mean"]) if rows else None
        tuned[name] = (best["min_val_loss_mean"], best["learning_rate"]) if best else None
    adaptive = {n: v for n, v in at_default.items() if n in ADAPTIVE}
    plain = {n: v for n, v in at_default.items() if n in PLAIN}
    claims = []
    if adaptive and plain:
        claims.append(
            lesson.Claim(
                TECHNIQUE,
                "Adaptive methods converge faster at their default settings.",
                f"training loss after {EPOCHS_TO_COMPARE} epochs at the default rate: "
                + ", ".join(
                    f"{n} {v:.3f}" for n, v in sorted(at_default.items(), key=lambda x: x[1])
                ),
                max(adaptive.values()) < min(plain.values()),
            )
        )
    ranked = sorted((v[0], n, v[1]) for n, v in tuned.items() if v is not None)
    if ranked:
        spread = ranked[-1][0] - ranked[0][0]
        claims.append(
            lesson.Claim(
                TECHNIQUE,
                "Tuned over the learning rate, the optimizers end up close (best min val_loss).",
                ", ".join(f"{n} {loss:.3f} (lr {rate:g})" for loss, n, rate in ranked)
                + f"; spread {spread:.3f}",
                spread < 0.02,
            )
        )
    return claims


def run(args: argparse.Namespace) -> None:
    names = args.optimizers.split(",") if args.optimizers else OPTIMIZERS.names()
    for name in names:
        OPTIMIZERS.get(name)  # unknown names fail before anything runs
    if not names:
        raise ConfigError("--optimizers needs at least one name")
    this = lesson.Run.from_args("lesson_optimizers", args)
    sweeps = {}
    for name in names:
        default = optimizer_defaults(name)["learning_rate"]
        grid = {"learning_rate": [default / 10, default, default * 10]}
        sweeps[name] = this.sweep(args, TrainConfig(optimizer=name), grid, name)
    if distributed.is_main():
        plot_at_default(sweeps, this.directory / "loss-at-default.png")
    this.finish(sweeps, judge(sweeps), "1-7 optimizers")


def plot_at_default(sweeps: dict[str, SweepResult], path) -> None:
    """Every optimizer's training and validation loss at its default rate, in one figure."""
    curves = {}
    for name, result in sweeps.items():
        curve = result.select({"learning_rate": optimizer_defaults(name)["learning_rate"]})
        epochs = np.arange(1, curve["loss"].shape[1] + 1)
        curves[name] = {"loss": curve["loss"], "epochs": epochs}
    plotting.plot_against(curves, path, "loss", title="1-7 optimizers at their default rate")


if __name__ == "__main__":
    lesson.main(build_parser, run)
