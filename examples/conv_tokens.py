"""A "tokens" model with a convolution, added from user code: word order matters here.

    Embed(num_words, 32) -> Conv1D(32, kernel 5) -> relu -> max over the real tokens -> Dense(1)

Padding (token 0) is zeroed after the embedding, so the convolution sees zeros there as it does
past the ends, and it is left out of the max pool. The model reads
:func:`jaxlab.load_imdb_tokens` and is trained over 3 seeds x 2 learning rates with
:func:`jaxlab.run_sweep`. Nothing in jaxlab is edited: :func:`register` adds the model by name.

``scan_epoch``: by default jaxlab runs an epoch as one ``lax.scan`` over its steps. For this
model on CPU one compiled call per step (``TrainConfig(scan_epoch=False)``) is far faster, so
this example uses it. Measured on a shared 2-core CPU (IMDB, maxlen 256, batch 128, embedding
and 32 filters of width 5), seconds per epoch after the first (process CPU seconds in brackets):

    models  reviews (steps)  scan_epoch=False    scan_epoch=True
    1       512 (4)          0.11-0.14 (0.2)     3.5 (6.4)         about 25x
    3       512 (4)          0.8 (1.4)           14-15 (22-24)     about 18x
    6       2000 (16)        9-11 (13-14)        330-580 (210-230) about 17x (others' jobs ran)

Compiling took about the same, 2-3 s, either way. (The bag-of-embeddings example has no convolution;
there both were equal, 0.55 s per epoch for 3 models, so it keeps the default.)

    python examples/conv_tokens.py --quick        # 2000 reviews per split, 3 epochs
    python examples/conv_tokens.py --data-dir ~/tensorflow_datasets --epochs 10
    python examples/conv_tokens.py --quick --scan-epoch   # the lax.scan epoch, to compare

Writes the sweep's histories and summary to a new folder under ``--out`` and prints a table of
mean ± std over seeds per learning rate, and the median seconds per epoch.
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

MODEL = "conv_tokens"
SEEDS = (0, 1, 2)
LEARNING_RATES = (1e-3, 3e-3)
QUICK_LIMIT, QUICK_EPOCHS = 2000, 3


class ConvTokens(nn.Module):
    """Embedding, one 1-D convolution with relu, a max over real tokens, one logit ([B])."""

    num_words: int = 10000
    dim: int = 32
    features: int = 32
    kernel: int = 5

    @nn.compact
    def __call__(self, tokens_BxL: jax.Array, *, train: bool = False) -> jax.Array:
        mask_BxLx1 = (tokens_BxL != 0)[..., None]
        vectors_BxLxD = nn.Embed(self.num_words, self.dim, name="embed")(tokens_BxL)
        vectors_BxLxD = jnp.where(mask_BxLx1, vectors_BxLxD, 0.0)
        conv = nn.Conv(self.features, (self.kernel,), padding="SAME", name="conv")
        hidden_BxLxF = nn.relu(conv(vectors_BxLxD))
        # relu outputs are >= 0, so 0 at padding never wins the max over a review's tokens.
        pooled_BxF = jnp.max(jnp.where(mask_BxLx1, hidden_BxLxF, 0.0), axis=1)
        return nn.Dense(1, name="output")(pooled_BxF)[:, 0]


def conv_tokens(
    num_words: int = 10000, dim: int = 32, features: int = 32, kernel: int = 5
) -> ConvTokens:
    """The registered factory: every hyperparameter has a default (jaxlab requires it)."""
    return ConvTokens(int(num_words), int(dim), int(features), int(kernel))


def register(name: str = MODEL) -> str:
    """Registers the model as ``name`` (a second call with this factory does nothing)."""
    if name not in jaxlab.MODELS or jaxlab.MODELS.get(name).factory is not conv_tokens:
        jaxlab.register_model(name, conv_tokens, inputs="tokens")
    return name


def make_config(
    *, model: str = MODEL, num_words: int = 10000, scan_epoch: bool = False, **fields
) -> jaxlab.TrainConfig:
    """The run's configuration (one compiled call per step: see the module docstring);
    ``fields`` are other :class:`jaxlab.TrainConfig` fields or the model's ``dim``,
    ``features`` and ``kernel``."""
    names = ("dim", "features", "kernel")
    model_args = {"num_words": num_words} | {k: fields.pop(k) for k in names if k in fields}
    fields = {"epochs": 10, "batch_size": 128} | fields
    return jaxlab.TrainConfig(model=model, model_args=model_args, scan_epoch=scan_epoch, **fields)


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
    num_words = config.model_hyperparameters()["num_words"]
    for tokens, _ in (train, validation):
        if int(np.max(tokens)) >= num_words:  # Embed would read NaN rows
            raise jaxlab.ConfigError(f"a word index {int(np.max(tokens))} >= num_words {num_words}")
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
        batch_size=128,
        seeds=len(SEEDS),
        learning_rates=list(LEARNING_RATES),
    )
    parser.add_argument("--limit", type=int, default=None, help="first N reviews per split")
    parser.add_argument("--maxlen", type=int, default=256, help="tokens kept per review")
    parser.add_argument("--features", type=int, default=32, help="convolution filters")
    parser.add_argument("--kernel", type=int, default=5, help="convolution width in tokens")
    parser.add_argument(
        "--scan-epoch", action="store_true", help="run each epoch as one lax.scan (slower here)"
    )
    cli.add_data_args(parser)
    return parser


def main(args: argparse.Namespace) -> jaxlab.SweepResult:
    limit = args.limit or (QUICK_LIMIT if args.quick else None)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else 10)
    train, test = jaxlab.load_imdb_tokens(args.num_words, args.maxlen, args.data_dir, limit)
    config = make_config(
        model=register(),
        num_words=args.num_words,
        features=args.features,
        kernel=args.kernel,
        scan_epoch=args.scan_epoch,
        epochs=epochs,
        batch_size=args.batch_size,
    )
    result = cli.sweep_into_folder(
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
    later = result.seconds[1:] or result.seconds
    print(f"median epoch {np.median(later):.2f} s (scan_epoch={config.scan_epoch})")
    return result


if __name__ == "__main__":
    cli.run(main, build_parser())
