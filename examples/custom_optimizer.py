"""A user-defined optimizer, added to jaxlab without editing jaxlab.

Importing this module registers ``signum`` (the sign of a momentum average, Bernstein et al.,
2018); from then on ``make_optimizer("signum", learning_rate=...)`` builds it like any built-in
optimizer, with its hyperparameters injected into the state for sweeps.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlab.optim import register_optimizer


class SignumState(NamedTuple):
    momentum: optax.Updates


def scale_by_signum(beta: float = 0.9) -> optax.GradientTransformation:
    """``m = beta m + (1 - beta) g``; the direction is ``sign(m)``."""

    def init(params: optax.Params) -> SignumState:
        return SignumState(momentum=optax.tree.zeros_like(params))

    def update(updates, state, params=None):
        momentum = jax.tree.map(
            lambda m, g: (beta * m + (1 - beta) * g).astype(m.dtype), state.momentum, updates
        )
        return jax.tree.map(jnp.sign, momentum), SignumState(momentum)

    return optax.GradientTransformation(init, update)


@register_optimizer("signum")
def signum(learning_rate: float = 1e-3, beta: float = 0.9) -> optax.GradientTransformation:
    """Signum: ``w -= lr sign(m)``."""
    return optax.chain(scale_by_signum(beta), optax.scale_by_learning_rate(learning_rate))


def compare_on_imdb() -> None:
    """Trains the lesson's model with signum and with rmsprop over a few seeds; prints both."""
    import argparse

    from jaxlab import cli
    from jaxlab.imdb import load_imdb_multi_hot
    from jaxlab.sweep import run_sweep
    from jaxlab.sweep_results import summary_table
    from jaxlab.train import TrainConfig

    parser = argparse.ArgumentParser(description="signum against rmsprop on IMDB")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--limit", type=int, default=None, help="first N reviews per split")
    cli.add_data_args(parser)

    def main(args: argparse.Namespace) -> None:
        train, test = load_imdb_multi_hot(args.num_words, args.data_dir, args.limit)
        # learning_rate is a grid axis so that each optimizer gets a value suited to it.
        result = run_sweep(
            TrainConfig(epochs=args.epochs),
            {"optimizer": ["rmsprop", "signum"], "learning_rate": [1e-3, 1e-4]},
            list(range(args.seeds)),
            train,
            test,
            verbose=not args.quiet,
        )
        print(summary_table(result))

    cli.run(main, parser)


if __name__ == "__main__":
    compare_on_imdb()
