"""A "bag" model and a loss added from user code: a wide-and-deep network with a hinge loss.

    logit = BagDense(1, name="wide")(x) + Dense(1)(relu(BagDense(16, name="deep")(x)))

Both first layers are :class:`jaxlab.BagDense`, named as the model likes: jaxlab feeds them
sparse multi-hot reviews (:func:`jaxlab.load_imdb_multi_hot`) in whatever form is fastest (on
CPU the compiled kernel, whose fused RMSprop update finds every ``BagDense``). The loss is the
hinge ``max(0, 1 - s * logit)`` with ``s = +-1``, registered with :func:`jaxlab.register_loss`.
The sweep trains 3 seeds x 2 learning rates with ``data_order="per_model"``: each model is
exactly ``jaxlab.fit(config, ..., seed=seed)`` at its learning rate.

    python examples/bag_model.py --quick        # 2000 reviews per split, 4 epochs
    python examples/bag_model.py --data-dir ~/tensorflow_datasets
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

import jaxlab
from jaxlab import cli

MODEL, LOSS = "wide_and_deep", "hinge"
SEEDS = (0, 1, 2)
LEARNING_RATES = (1e-3, 3e-4)
QUICK_LIMIT, QUICK_EPOCHS = 2000, 4


class WideAndDeep(nn.Module):
    """A linear model of the words plus a one-hidden-layer network of them; one logit ([B])."""

    hidden: int = 16

    @nn.compact
    def __call__(self, x, *, train: bool = False) -> jax.Array:
        wide_Bx1 = jaxlab.BagDense(1, name="wide")(x)
        deep_BxH = nn.relu(jaxlab.BagDense(self.hidden, name="deep")(x))
        return (wide_Bx1 + nn.Dense(1, name="head")(deep_BxH))[:, 0]


def wide_and_deep(hidden: int = 16) -> WideAndDeep:
    """The registered factory: every hyperparameter has a default (jaxlab requires it)."""
    return WideAndDeep(int(hidden))


def hinge(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example hinge loss of a logit against a 0/1 label."""
    signs = 2.0 * labels - 1.0
    return jnp.maximum(0.0, 1.0 - signs * logits)


def register(model: str = MODEL, loss: str = LOSS) -> tuple[str, str]:
    """Registers the model and the loss under these names (again: nothing happens)."""
    if model not in jaxlab.MODELS or jaxlab.MODELS.get(model).factory is not wide_and_deep:
        jaxlab.register_model(model, wide_and_deep, inputs="bag")
    if loss not in jaxlab.LOSSES or jaxlab.LOSSES.get(loss).loss is not hinge:
        jaxlab.register_loss(loss, hinge)
    return model, loss


def make_config(*, model: str = MODEL, loss: str = LOSS, **fields) -> jaxlab.TrainConfig:
    """RMSprop, batch 512, like the lesson; ``fields`` are other TrainConfig fields or the
    model's ``hidden``."""
    model_args = {"hidden": fields.pop("hidden")} if "hidden" in fields else {}
    fields = {"epochs": 10, "batch_size": 512} | fields
    return jaxlab.TrainConfig(model=model, model_args=model_args, loss=loss, **fields)


def sweep(
    train,
    validation,
    *,
    config: jaxlab.TrainConfig | None = None,
    seeds: Sequence[int] = SEEDS,
    learning_rates: Sequence[float] = LEARNING_RATES,
    **kwargs,
) -> jaxlab.SweepResult:
    """Every (learning rate, seed) model, each on its own data order; ``kwargs`` go to
    :func:`jaxlab.run_sweep`."""
    config = config or make_config()
    grid = {"learning_rate": list(learning_rates)}
    return jaxlab.run_sweep(
        config, grid, list(seeds), train, validation, data_order="per_model", **kwargs
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cli.add_sweep_args(
        parser,
        quick="2000 reviews per split, 4 epochs",
        epochs=10,
        batch_size=512,
        seeds=len(SEEDS),
        learning_rates=list(LEARNING_RATES),
    )
    parser.add_argument("--limit", type=int, default=None, help="first N reviews per split")
    parser.add_argument("--hidden", type=int, default=16, help="width of the deep part")
    cli.add_data_args(parser)
    return parser


def main(args: argparse.Namespace) -> jaxlab.SweepResult:
    limit = args.limit or (QUICK_LIMIT if args.quick else None)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else 10)
    train, test = jaxlab.load_imdb_multi_hot(args.num_words, args.data_dir, limit)
    model, loss = register()
    config = make_config(
        model=model, loss=loss, hidden=args.hidden, epochs=epochs, batch_size=args.batch_size
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
