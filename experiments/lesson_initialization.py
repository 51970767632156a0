"""1-6 Weight initialization: zeros, normal(1.0), lecun_normal, glorot_uniform, he_normal,
vmapped over 5 seeds in one program.

The lesson: a good initialization (Xavier/Glorot, He) speeds and stabilizes training and avoids
vanishing or exploding gradients; all-zero weights cannot break the symmetry between units.

    python experiments/lesson_initialization.py
    python experiments/lesson_initialization.py --quick
"""

from __future__ import annotations

import argparse

import numpy as np

from jaxlab import lesson, verdicts
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

INITS = ["zeros", "normal_1", "lecun_normal", "glorot_uniform", "he_normal"]
GOOD = ["glorot_uniform", "he_normal"]
SAME = 1e-6  # units whose weights differ by less are copies of each other
TECHNIQUE = "1-6 initialization"


def build_parser() -> argparse.ArgumentParser:
    return lesson.parser(__doc__.split("\n\n")[0])


def unit_spreads(params) -> np.ndarray:
    """Per seed, the largest difference between any hidden unit's weights and the first
    unit's, over every hidden layer: 0 means all units of a layer are copies of each other."""
    spreads = []
    for name, layer in params.items():
        if name == "output":
            continue
        kernel = np.asarray(layer["kernel"])  # seeds x inputs x units
        spreads.append(np.abs(kernel - kernel[..., :1]).max(axis=(1, 2)))
    return np.max(spreads, axis=0)


def unit_spread(params) -> float:
    """:func:`unit_spreads` over every seed."""
    return float(unit_spreads(params).max())


def judge(result: SweepResult) -> list[lesson.Claim]:
    rows = {row["kernel_init"]: row for row in result.summary()}
    zeros = unit_spreads(result.params_of({"kernel_init": "zeros"}))
    zeros_spread = float(zeros.max())
    glorot_spread = unit_spread(result.params_of({"kernel_init": "glorot_uniform"}))
    first = {init: lesson.at_epoch(result, {"kernel_init": init}, 1) for init in INITS}
    first_loss = {init: float(np.nanmean(loss)) for init, loss in first.items()}
    fastest = min(first_loss, key=first_loss.get)
    large, good = rows["normal_1"], rows["glorot_uniform"]
    best = {init: lesson.val_loss_minimum(result, {"kernel_init": init})[0] for init in INITS}
    others = [init for init in INITS if init not in GOOD]
    return [
        lesson.claim(
            TECHNIQUE,
            "All-zero weights cannot break the symmetry between hidden units.",
            f"after training, hidden units differ by at most {zeros_spread:.2g} with zeros "
            f"(glorot_uniform: {glorot_spread:.2g}); peak val_accuracy "
            f"{rows['zeros']['peak_val_accuracy_mean']:.3f}",
            verdicts.one_sample(
                "largest difference between hidden units' weights after training, zeros",
                zeros,
                "<",
                SAME,
                "float32 round-off: the units are copies of each other",
                bounds=(0, np.inf),
            ),
            why=f"With zeros, hidden units differ by up to {zeros_spread:.2g} after training.",
        ),
        lesson.claim(
            TECHNIQUE,
            "Too large an initialization hurts.",
            f"normal(1.0): min val_loss {large['min_val_loss_mean']:.3f} ± "
            f"{large['min_val_loss_std']:.3f}, peak val_accuracy "
            f"{large['peak_val_accuracy_mean']:.3f}; glorot_uniform: "
            f"{good['min_val_loss_mean']:.3f} ± {good['min_val_loss_std']:.3f}, "
            f"{good['peak_val_accuracy_mean']:.3f}",
            verdicts.paired(
                "min val_loss, normal(1.0) minus glorot_uniform",
                best["normal_1"],
                best["glorot_uniform"],
                ">",
                lesson.LOSS_GAP,
                lesson.LOSS_GAP_REASON,
            ),
            why=f"min val_loss: normal(1.0) {large['min_val_loss_mean']:.3f}, glorot_uniform "
            f"{good['min_val_loss_mean']:.3f}.",
        ),
        lesson.claim(
            TECHNIQUE,
            "Glorot/He initializations converge fastest.",
            "epoch-1 training loss: "
            + ", ".join(f"{init} {loss:.3f}" for init, loss in first_loss.items())
            + f"; lowest: {fastest}",
            verdicts.paired(
                "epoch-1 training loss, the better of Glorot and He minus the best other "
                "(per seed)",
                np.min([first[init] for init in GOOD], axis=0),
                np.min([first[init] for init in others], axis=0),
                "<",
                -lesson.LOSS_GAP,
                lesson.LOSS_GAP_REASON,
            ),
            why="epoch-1 training loss: "
            + ", ".join(f"{init} {loss:.3f}" for init, loss in first_loss.items())
            + ".",
        ),
    ]


def run(args: argparse.Namespace) -> None:
    this = lesson.Run.from_args("lesson_initialization", args)
    result = this.sweep(
        args, TrainConfig(), {"kernel_init": INITS}, "initializers", keep_params=True
    )
    this.finish({"initializers": result}, judge(result), "1-6 weight initialization")


if __name__ == "__main__":
    lesson.main(build_parser, run)
