"""A loss added from user code: binary cross-entropy against labels smoothed by 0.1.

A label ``y`` becomes ``y (1 - 0.1) + 0.05`` (0 -> 0.05, 1 -> 0.95), so the model is never pushed
to infinite logits. :func:`register` adds the loss as ``"smoothed_bce"`` with
:func:`jaxlab.register_loss`; then it is a grid value like any other. This example sweeps the
lesson's ``"mlp"`` on multi-hot reviews (:func:`jaxlab.load_imdb_multi_hot`) with both losses
over 3 seeds, one compiled group per loss:

    python examples/label_smoothing.py --quick        # 2000 reviews per split, 4 epochs
    python examples/label_smoothing.py --data-dir ~/tensorflow_datasets

Compare the accuracies: the smoothed loss has a floor above 0 (its ``val_loss`` is in other
units). Accuracy is counted against the true 0/1 labels (the loss's default accuracy).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import optax

import jaxlab
from jaxlab import cli

LOSS = "smoothed_bce"
SMOOTHING = 0.1
SEEDS = (0, 1, 2)
QUICK_LIMIT, QUICK_EPOCHS = 2000, 4


def smoothed_bce(logits: jax.Array, labels: jax.Array, smoothing: float = SMOOTHING) -> jax.Array:
    """Per-example binary cross-entropy (from logits) against labels smoothed toward 0.5."""
    targets = labels * (1.0 - smoothing) + 0.5 * smoothing
    return optax.sigmoid_binary_cross_entropy(logits, targets)


def register(name: str = LOSS) -> str:
    """Registers the loss as ``name`` (a second call with this function does nothing)."""
    if name not in jaxlab.LOSSES or jaxlab.LOSSES.get(name).loss is not smoothed_bce:
        jaxlab.register_loss(name, smoothed_bce)
    return name


def make_config(**fields) -> jaxlab.TrainConfig:
    """The lesson's network and training (``mlp``, rmsprop, batch 512) for a few epochs;
    ``fields`` are any :class:`jaxlab.TrainConfig` fields."""
    return jaxlab.TrainConfig(**({"model": "mlp", "epochs": 10, "batch_size": 512} | fields))


def sweep(
    train,
    validation,
    *,
    config: jaxlab.TrainConfig | None = None,
    losses: Sequence[str] = ("binary_crossentropy", LOSS),
    seeds: Sequence[int] = SEEDS,
    **kwargs,
) -> jaxlab.SweepResult:
    """Every (loss, seed) model; ``kwargs`` go to :func:`jaxlab.run_sweep` (e.g. ``data_order``)."""
    config = config or make_config()
    return jaxlab.run_sweep(
        config, {"loss": list(losses)}, list(seeds), train, validation, **kwargs
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_sweep_args(
        parser,
        quick="2000 reviews per split, 4 epochs",
        epochs=10,
        batch_size=512,
        seeds=len(SEEDS),
    )
    parser.add_argument("--limit", type=int, default=None, help="first N reviews per split")
    cli.add_data_args(parser)
    return parser


def main(args: argparse.Namespace) -> jaxlab.SweepResult:
    limit = args.limit or (QUICK_LIMIT if args.quick else None)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else 10)
    train, test = jaxlab.load_imdb_multi_hot(args.num_words, args.data_dir, limit)
    config = make_config(epochs=epochs, batch_size=args.batch_size)
    losses = ["binary_crossentropy", register()]
    return cli.sweep_into_folder(
        args,
        "label_smoothing",
        lambda **saving: sweep(
            train,
            test,
            config=config,
            losses=losses,
            seeds=range(args.seeds),
            verbose=not args.quiet,
            **saving,
        ),
    )


if __name__ == "__main__":
    cli.run(main, build_parser())
