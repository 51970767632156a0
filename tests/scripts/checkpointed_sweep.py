"""A small checkpointed sweep for the resume tests: 2 compiled groups (hidden) x 2 learning rates
x 2 seeds on synthetic data, pausing ``--pause`` seconds after every epoch so that a test can
interrupt it between checkpoints. Writes the final parameters to params.npz."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import synthetic_reviews  # noqa: E402

from jaxlab import cli, distributed, run_sweep  # noqa: E402
from jaxlab.train import TrainConfig  # noqa: E402

GRID = {"hidden": [(8, 8), (4,)], "learning_rate": [1e-2, 3e-3]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--out", default="results")
    cli.add_run_args(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    train, validation = synthetic_reviews(300, 50, seed=0), synthetic_reviews(100, 50, seed=1)
    config = TrainConfig(model_args={"hidden": (8, 8)}, epochs=args.epochs, batch_size=32)
    folder = cli.run_dir(args, "checkpointed")

    def each_epoch(result) -> None:
        if distributed.is_main():
            result.save(folder)
        time.sleep(args.pause)

    result = run_sweep(
        config,
        GRID,
        [0, 1],
        train,
        validation,
        data_order="per_model",
        keep_params=True,
        verbose=False,
        on_epoch_end=each_epoch,
        checkpoint_dir=folder / "checkpoints",
        checkpoint_every=args.checkpoint_every,
        resume=bool(args.resume),
    )
    if not distributed.is_main():
        return
    result.save(folder)
    leaves = {}
    for number, (_, _, params) in enumerate(result.final_params):
        for path, leaf in jax.tree_util.tree_leaves_with_path(params):
            leaves[f"{number}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
    np.savez(folder / "params.npz", **leaves)
    print(f"results in {folder}")


if __name__ == "__main__":
    cli.run(main, build_parser())
