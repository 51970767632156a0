"""A "dense" model on a numpy table, added from user code: no text, no IMDB.

The data is synthetic: ``rows`` x ``features`` standard-normal floats, labelled by a nonlinear
rule of the first five columns (an interaction, a sine, a square) with 5% of labels flipped; the
other columns are noise. :func:`register` adds an MLP on float ``[B, D]`` inputs; its swept
``dropout`` arrives as a traced float per model (so it is used in ``jnp`` arithmetic, through
``jaxlab.models.dropout``), while ``hidden`` widths compile one program per value. The sweep
trains 3 seeds x 2 learning rates (x dropout values) in one compiled program:

    python examples/tabular.py --quick
    python examples/tabular.py --rows 20000 --dropout 0,0.2 --epochs 40
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import numpy as np
from flax import linen as nn

import jaxlab
from jaxlab import cli
from jaxlab.models import dropout, is_zero

MODEL = "tabular_mlp"
SEEDS = (0, 1, 2)
LEARNING_RATES = (1e-3, 1e-2)


def make_dataset(
    rows: int = 2000, features: int = 20, seed: int = 0, validation: float = 0.25
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``(x_train, y_train), (x_val, y_val)``: float32 ``[N, features]``, labels 0/1."""
    if features < 5:
        raise jaxlab.ConfigError(f"the rule reads 5 columns; got features={features}")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    score = x[:, 0] * x[:, 1] + np.sin(2 * x[:, 2]) + 0.5 * x[:, 3] ** 2 - 0.5 + 0.3 * x[:, 4]
    labels = (score > 0) ^ (rng.random(rows) < 0.05)
    cut = int(rows * (1 - validation))
    y = labels.astype(np.float32)
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


class TabularMLP(nn.Module):
    """Dense layers with relu (dropout after each), then one logit (shape ``[B]``)."""

    hidden: Sequence[int] = (64, 64)
    dropout: float | jax.Array = 0.0

    @nn.compact
    def __call__(self, x_BxD: jax.Array, *, train: bool = False) -> jax.Array:
        for index, width in enumerate(self.hidden):
            x_BxD = nn.relu(nn.Dense(width, name=f"hidden_{index + 1}")(x_BxD))
            if train and not is_zero(self.dropout):
                x_BxD = dropout(x_BxD, self.dropout, self.make_rng("dropout"))
        return nn.Dense(1, name="output")(x_BxD)[:, 0]


def tabular_mlp(hidden: tuple[int, ...] = (64, 64), dropout: float = 0.0) -> TabularMLP:
    """The registered factory: every hyperparameter has a default (jaxlab requires it)."""
    widths = (hidden,) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
    return TabularMLP(widths, dropout)


def register(name: str = MODEL) -> str:
    """Registers the model as ``name`` (a second call with this factory does nothing)."""
    if name not in jaxlab.MODELS or jaxlab.MODELS.get(name).factory is not tabular_mlp:
        jaxlab.register_model(name, tabular_mlp, inputs="dense")
    return name


def make_config(*, model: str = MODEL, hidden=(64, 64), **fields) -> jaxlab.TrainConfig:
    """Adam, batch 128; ``fields`` are any other :class:`jaxlab.TrainConfig` fields."""
    fields = {"optimizer": "adam", "epochs": 20, "batch_size": 128} | fields
    return jaxlab.TrainConfig(model=model, model_args={"hidden": hidden}, **fields)


def sweep(
    train,
    validation,
    *,
    config: jaxlab.TrainConfig | None = None,
    seeds: Sequence[int] = SEEDS,
    learning_rates: Sequence[float] = LEARNING_RATES,
    dropouts: Sequence[float] | None = None,
    data_order: str = "per_model",
    **kwargs,
) -> jaxlab.SweepResult:
    """Every (learning rate, dropout, seed) model; ``kwargs`` go to :func:`jaxlab.run_sweep`."""
    config = config or make_config()
    grid = {"learning_rate": list(learning_rates)}
    if dropouts is not None:
        grid["dropout"] = [float(rate) for rate in dropouts]
    return jaxlab.run_sweep(
        config, grid, list(seeds), train, validation, data_order=data_order, **kwargs
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_sweep_args(
        parser,
        quick="5 epochs",
        epochs=20,
        batch_size=128,
        seeds=len(SEEDS),
        learning_rates=list(LEARNING_RATES),
    )
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic table")
    parser.add_argument("--dropout", type=cli.parse_floats, default=None, help="e.g. 0,0.2")
    parser.add_argument("--out", default="results", help="results root")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(args: argparse.Namespace) -> jaxlab.SweepResult:
    train, validation = make_dataset(args.rows, args.features, args.data_seed)
    epochs = args.epochs or (5 if args.quick else 20)
    config = make_config(model=register(), epochs=epochs, batch_size=args.batch_size)
    return cli.sweep_into_folder(
        args,
        "tabular",
        lambda **saving: sweep(
            train,
            validation,
            config=config,
            seeds=range(args.seeds),
            learning_rates=args.learning_rates,
            dropouts=args.dropout,
            verbose=not args.quiet,
            **saving,
        ),
    )


if __name__ == "__main__":
    cli.run(main, build_parser())
