"""1-5 Activations: sigmoid, tanh, relu, leaky_relu and gelu in the lesson's network, vmapped
over 5 seeds in one program; per-layer gradient sizes at initialization and the hidden units
that are never active on the training set after training.

The lesson: sigmoid trains slower and its gradients shrink towards the first layer (vanishing
gradients); some ReLU units die (never active, so they stop learning); Leaky ReLU avoids that.

    python experiments/lesson_activations.py
    python experiments/lesson_activations.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import lesson, verdicts
from jaxlab.activations import ACTIVATIONS
from jaxlab.losses import binary_crossentropy
from jaxlab.models import layer_names, mlp
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

NAMES = ["sigmoid", "tanh", "relu", "leaky_relu", "gelu"]
EARLY_EPOCH = 2  # "trains slower": the training loss this early
GRADIENT_BATCH = 512  # training reviews the gradients are measured on
TECHNIQUE = "1-5 activations"


def build_parser() -> argparse.ArgumentParser:
    return lesson.parser(__doc__.split("\n\n")[0])


def gradient_rms(params, x, y, activation: str) -> list[float]:
    """Root-mean-square of the loss gradient of each layer's kernel, first layer first."""
    module = mlp(activation=activation)  # its first layer reads the dense [B, V] batch

    def loss(params):
        return jnp.mean(binary_crossentropy(module.apply({"params": params}, x), y))

    grads = jax.grad(loss)(params)
    return [float(jnp.sqrt(jnp.mean(grads[name]["kernel"] ** 2))) for name in in_order(params)]


def initial_params(seed: int, x):
    """The lesson network's parameters initialized from ``jax.random.key(seed)``."""
    return mlp().init(jax.random.key(seed), jnp.zeros((1, x.shape[1]), jnp.float32))["params"]


def in_order(params) -> list[str]:
    """Layer names from the first layer to the output (dicts of arrays may come sorted)."""
    return layer_names(len(params))


def never_active(params, x_dense_chunks, activation: str) -> float:
    """The fraction of hidden units whose input is <= 0 for every training review."""
    act = ACTIVATIONS.get(activation)
    hidden = in_order(params)[:-1]
    peak = {name: -np.inf for name in hidden}
    for x in x_dense_chunks:
        h = jnp.asarray(x)
        for name in hidden:
            z = h @ params[name]["kernel"] + params[name]["bias"]
            peak[name] = np.maximum(peak[name], np.asarray(z.max(axis=0)))
            h = act(z)
    return float(np.mean(np.concatenate([peak[name] <= 0 for name in hidden])))


def dense_chunks(x, size: int = 2500):
    for start in range(0, len(x), size):
        yield x.take(np.arange(start, min(start + size, len(x)))).to_dense()


def measure(result: SweepResult, train) -> tuple[dict, dict]:
    """Per activation and seed: gradient RMS per layer at initialization, and the fraction of
    never-active hidden units after training."""
    x, y = train
    rows = np.arange(min(GRADIENT_BATCH, len(y)))
    batch_x, batch_y = jnp.asarray(x.take(rows).to_dense()), jnp.asarray(y[rows])
    seeds = result.values("seed")
    gradients, dead = {}, {}
    for name in NAMES:
        gradients[name] = [
            gradient_rms(initial_params(s, batch_x), batch_x, batch_y, name) for s in seeds
        ]
        final = result.params_of({"activation": name})
        dead[name] = [
            never_active(jax.tree.map(lambda leaf, i=i: leaf[i], final), dense_chunks(x), name)
            for i in range(len(seeds))
        ]
    return gradients, dead


def shrinkage(per_seed: list[list[float]]) -> np.ndarray:
    """Per seed, log10 of the first layer's kernel-gradient RMS over the last layer's."""
    rms = np.asarray(per_seed, float)
    return np.log10(rms[:, 0] / rms[:, -1])


def judge(result: SweepResult, gradients: dict, dead: dict) -> list[lesson.Claim]:
    early = {name: lesson.loss_at(result, {"activation": name}, EARLY_EPOCH) for name in NAMES}
    loss = {name: lesson.at_epoch(result, {"activation": name}, EARLY_EPOCH) for name in NAMES}
    others = [name for name in NAMES if name != "sigmoid"]
    mean_rms = {name: np.mean(g, axis=0) for name, g in gradients.items()}
    ratio = {name: g[0] / g[-1] for name, g in mean_rms.items()}
    sigmoid = mean_rms["sigmoid"]
    dead_mean = {name: float(np.mean(values)) for name, values in dead.items()}
    shrink = {name: shrinkage(g) for name, g in gradients.items()}
    units = 2 * 16  # hidden units of the lesson's network
    tenfold = (-1.0, "ten times more shrinkage: sigmoid's slope is at most 1/4 per layer")
    vs_relu = verdicts.paired(
        "log10(first / last layer kernel-gradient RMS), sigmoid minus relu",
        shrink["sigmoid"],
        shrink["relu"],
        "<",
        *tenfold,
    )
    alone = verdicts.one_sample(
        "log10(first / last layer kernel-gradient RMS), sigmoid", shrink["sigmoid"], "<", *tenfold
    )
    half_unit = 0.5 / units
    leaky, relu = (100 * dead_mean[name] for name in ("leaky_relu", "relu"))
    leaky_why = (
        f"Never-active hidden units: leaky_relu {leaky:.1f}%, relu {relu:.1f}%. A Leaky ReLU "
        "unit with a negative input on every review still "
        "passes 0.2 of the gradient and can recover, so it is not dead the way a ReLU unit is: "
        "Leaky ReLU removes the zero gradient, not the negative input."
    )
    unit_reason = f"half a unit of the {units} hidden units per seed"
    return [
        lesson.claim(
            TECHNIQUE,
            "Sigmoid trains slower.",
            f"training loss after epoch {EARLY_EPOCH}: "
            + ", ".join(f"{n} {m:.3f} ± {s:.3f}" for n, (m, s) in early.items()),
            verdicts.paired(
                f"training loss after epoch {EARLY_EPOCH}, sigmoid minus the slowest other "
                "activation (per seed)",
                loss["sigmoid"],
                np.max([loss[name] for name in others], axis=0),
                ">",
                lesson.LOSS_GAP,
                lesson.LOSS_GAP_REASON,
            ),
            why=f"After epoch {EARLY_EPOCH}: "
            + ", ".join(f"{n} {m:.3f}" for n, (m, _) in early.items())
            + ".",
        ),
        lesson.claim(
            TECHNIQUE,
            "Sigmoid's gradients shrink towards the first layer.",
            "kernel-gradient RMS at initialization, first to last layer: sigmoid "
            + " < ".join(f"{g:.2e}" for g in sigmoid)
            + "; first/last layer: "
            + ", ".join(f"{n} {r:.3g}" for n, r in ratio.items()),
            dataclasses.replace(vs_relu, reading="compared with ReLU"),
            [dataclasses.replace(alone, reading="sigmoid alone")],
            "compared with ReLU: '입력값이 양수인 경우 그대로 반환하기 때문에 시그모이드보다 연산 "
            "속도가 빠르며, 그래디언트 소실 문제가 덜 발생합니다' (ReLU suffers less vanishing "
            "than sigmoid)",
            why="First/last layer gradient RMS at initialization: "
            + ", ".join(f"{n} {r:.3g}" for n, r in ratio.items())
            + ".",
        ),
        lesson.claim(
            TECHNIQUE,
            "Some ReLU units die (never active on the training set).",
            "never-active hidden units after training: "
            + ", ".join(f"{n} {100 * v:.1f}%" for n, v in dead_mean.items()),
            verdicts.one_sample(
                "fraction of never-active hidden units after training, relu",
                dead["relu"],
                ">",
                half_unit,
                unit_reason,
                bounds=(0, 1),
            ),
            why="Never-active units per seed, relu: "
            + ", ".join(f"{round(v * units)}" for v in dead["relu"])
            + f" of {units}.",
        ),
        lesson.claim(
            TECHNIQUE,
            "Leaky ReLU avoids dead units.",
            f"never-active hidden units: leaky_relu {100 * dead_mean['leaky_relu']:.1f}% vs "
            f"relu {100 * dead_mean['relu']:.1f}% (per seed: leaky_relu "
            + ", ".join(f"{100 * v:.0f}%" for v in dead["leaky_relu"])
            + "; relu "
            + ", ".join(f"{100 * v:.0f}%" for v in dead["relu"])
            + "); a never-active Leaky ReLU unit still passes 0.2 of the gradient, a ReLU one "
            "none",
            verdicts.paired(
                "fraction of never-active hidden units, leaky_relu minus relu",
                dead["leaky_relu"],
                dead["relu"],
                "<",
                -half_unit,
                unit_reason,
            ),
            why=leaky_why,
        ),
    ]


def run(args: argparse.Namespace) -> None:
    this = lesson.Run.from_args("lesson_activations", args)
    result = this.sweep(args, TrainConfig(), {"activation": NAMES}, "activations", keep_params=True)
    gradients, dead = measure(result, this.data(args)[0])
    this.write_info(
        gradient_rms_at_init={name: np.mean(g, axis=0).tolist() for name, g in gradients.items()},
        gradient_rms_at_init_per_seed=gradients,
        never_active_units=dead,
    )
    this.finish({"activations": result}, judge(result, gradients, dead), "1-5 activations")


if __name__ == "__main__":
    lesson.main(build_parser, run)
