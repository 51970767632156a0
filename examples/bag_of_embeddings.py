"""A "tokens" model added from user code: the mean of the review's word embeddings, then a logit.

    Embed(num_words, 32) -> mean over the non-padding tokens (0 = padding) -> Dense(1)

It reads :func:`jaxlab.load_imdb_tokens` (int32 ``[N, maxlen]``, pre-padded with 0) and is
trained over 3 seeds x 2 learning rates with :func:`jaxlab.run_sweep`, six models in one
compiled program. Nothing in jaxlab is edited: :func:`register` adds the model by name. An
epoch runs as one ``lax.scan`` (the default): on a 2-core CPU it was as fast as one compiled
call per step (``scan_epoch=False``), 0.55 s per epoch for 3 models on 2000 reviews.

    python examples/bag_of_embeddings.py --quick        # 2000 reviews per split, 3 epochs
    python examples/bag_of_embeddings.py --data-dir ~/tensorflow_datasets --epochs 10

Writes the sweep's histories and summary to a new folder under ``--out`` and prints a table of
mean ± std over seeds per learning rate.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

import jaxlab
from jaxlab import cli

MODEL = "bag_of_embeddings"
SEEDS = (0, 1, 2)
LEARNING_RATES = (1e-2, 3e-2)
QUICK_LIMIT, QUICK_EPOCHS = 2000, 3


class BagOfEmbeddings(nn.Module):
    """Word vectors averaged over each review's real tokens, then one logit (shape ``[B]``)."""

    num_words: int = 10000
    dim: int = 32

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array, *, train: bool = False) -> jax.Array:
        mask_BxL = (tokens_BxL != 0).astype(jnp.float32)
        vectors_BxLxD = nn.Embed(self.num_words, self.dim, name="embed")(tokens_BxL)
        total_BxD = jnp.sum(vectors_BxLxD * mask_BxL[..., None], axis=1)
        count_Bx1 = jnp.maximum(jnp.sum(mask_BxL, axis=1, keepdims=True), 1.0)
        return nn.Dense(1, name="output")(total_BxD / count_Bx1)[:, 0]


def bag_of_embeddings(num_words: int = 10000, dim: int = 32) -> BagOfEmbeddings:
    """The registered factory: every hyperparameter has a default (jaxlab requires it)."""
    return BagOfEmbeddings(int(num_words), int(dim))


def register(name: str = MODEL) -> str:
    """Registers the model as ``name`` (a second call with this factory does nothing)."""
    if name not in jaxlab.MODELS or jaxlab.MODELS.get(name).factory is not bag_of_embeddings:
        jaxlab.register_model(name, bag_of_embeddings, inputs="tokens")
    return name


def make_config(
    *, model: str = MODEL, num_words: int = 10000, dim: int = 32, **fields
) -> jaxlab.TrainConfig:
    """The run's configuration; ``fields`` are any other :class:`jaxlab.TrainConfig` fields."""
    fields = {"epochs": 10, "batch_size": 512} | fields
    return jaxlab.TrainConfig(
        model=model, model_args={"num_words": num_words, "dim": dim}, **fields
    )


def check_tokens(config: jaxlab.TrainConfig, *splits) -> None:
    """Word indices must be below the embedding's ``num_words`` (Embed would read NaN rows)."""
    num_words = config.model_hyperparameters()["num_words"]
    for tokens, _ in splits:
        if int(np.max(tokens)) >= num_words:
            raise jaxlab.ConfigError(f"a word index {int(np.max(tokens))} >= num_words {num_words}")


def sweep(
    train,
    validation,
    *,
    config: jaxlab.TrainConfig | None = None,
    seeds: Sequence[int] = SEEDS,
    learning_rates: Sequence[float] = LEARNING_RATES,
    data_order: str = "per_model",
    **kwargs,
) -> jaxlab.SweepResult:
    """Every (learning rate, seed) model; ``kwargs`` go to :func:`jaxlab.run_sweep`. With
    ``data_order="per_model"`` each model equals ``jaxlab.fit(config, ..., seed=seed)``."""
    config = config or make_config()
    check_tokens(config, train, validation)
    grid = {"learning_rate": list(learning_rates)}
    return jaxlab.run_sweep(
        config, grid, list(seeds), train, validation, data_order=data_order, **kwargs
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_sweep_args(
        parser,
        quick="2000 reviews per split, 3 epochs",
        epochs=10,
        batch_size=512,
        seeds=len(SEEDS),
        learning_rates=list(LEARNING_RATES),
    )
    parser.add_argument("--limit", type=int, default=None, help="first N reviews per split")
    parser.add_argument("--maxlen", type=int, default=256, help="tokens kept per review")
    parser.add_argument("--dim", type=int, default=32, help="embedding width")
    cli.add_data_args(parser)
    return parser


def main(args: argparse.Namespace) -> jaxlab.SweepResult:
    limit = args.limit or (QUICK_LIMIT if args.quick else None)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else 10)
    train, test = jaxlab.load_imdb_tokens(args.num_words, args.maxlen, args.data_dir, limit)
    config = make_config(
        model=register(),
        num_words=args.num_words,
        dim=args.dim,
        epochs=epochs,
        batch_size=args.batch_size,
    )
    return cli.sweep_into_folder(
        args,
        MODEL,
        lambda **saving: sweep(
            train,
            test,
            config=config,
            seeds=range(args.seeds),
            learning_rates=args.learning_rates,
            verbose=not args.quiet,
            **saving,
        ),
    )


if __name__ == "__main__":
    cli.run(main, build_parser())
