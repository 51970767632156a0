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

from jaxlab import lesson
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

INITS = ["zeros", "normal_1", "lecun_normal", "glorot_uniform", "he_normal"]
GOOD = ["glorot_uniform", "he_normal"]
TECHNIQUE = "1-6 initialization"


def build_parser() -> argparse.ArgumentParser:
    return lesson.parser(__doc__.split("\n\n")[0])


def unit_spread(params) -> float:
    """The largest difference between any hidden unit's weights and the first unit's, over
    every hidden layer and seed: 0 means all units of a layer are copies of each other."""
    spreads = []
    for name, layer in params.items():
        if name == "output":
            continue
        kernel = np.asarray(layer["kernel"])  # seeds x inputs x units
        spreads.append(np.abs(kernel - kernel[..., :1]).max())
    return float(max(spreads))


def judge(result: SweepResult) -> list[lesson.Claim]:
    rows = {row["kernel_init"]: row for row in result.summary()}
    zeros_spread = unit_spread(result.params_of({"kernel_init": "zeros"}))
    glorot_spread = unit_spread(result.params_of({"kernel_init": "glorot_uniform"}))
    first_loss = {
        init: float(np.nanmean(result.select({"kernel_init": init})["loss"][:, 0]))
        for init in INITS
    }
    fastest = min(first_loss, key=first_loss.get)
    large, good = rows["normal_1"], rows["glorot_uniform"]
    return [
        lesson.Claim(
            TECHNIQUE,
            "All-zero weights cannot break the symmetry between hidden units.",
            f"after training, hidden units differ by at most {zeros_spread:.2g} with zeros "
            f"(glorot_uniform: {glorot_spread:.2g}); peak val_accuracy "
            f"{rows['zeros']['peak_val_accuracy_mean']:.3f}",
            zeros_spread < 1e-6 < glorot_spread,
        ),
        lesson.Claim(
            TECHNIQUE,
            "Too large an initialization hurts.",
            f"normal(1.0): min val_loss {large['min_val_loss_mean']:.3f} ± "
            f"{large['min_val_loss_std']:.3f}, peak val_accuracy "
            f"{large['peak_val_accuracy_mean']:.3f}; glorot_uniform: "
            f"{good['min_val_loss_mean']:.3f} ± {good['min_val_loss_std']:.3f}, "
            f"{good['peak_val_accuracy_mean']:.3f}",
            large["min_val_loss_mean"] - large["min_val_loss_std"]
            > good["min_val_loss_mean"] + good["min_val_loss_std"],
        ),
        lesson.Claim(
            TECHNIQUE,
            "Glorot/He initializations converge fastest.",
            "epoch-1 training loss: "
            + ", ".join(f"{init} {loss:.3f}" for init, loss in first_loss.items())
            + f"; lowest: {fastest}",
            fastest in GOOD,
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
