"""1-7 Optimizers: every registered optimizer at its (Keras) default learning rate and at 1/10
and 10x of it, 5 seeds each; one sweep per optimizer, learning rates vmapped.

The lesson: optimizers (SGD, RMSprop, Adam, ...) update the weights to minimize the loss; the
learning rate and momentum govern speed and stability. The claim checked: adaptive methods
converge faster at their defaults; the best-tuned comparison is reported beside it.

Each optimizer's family ("adaptive" or "plain") is the one declared when it was registered
(``register_optimizer(..., family=...)``); one registered without a family, e.g. from
``--import my_optimizers.py``, is trained and tuned like the others but listed as unclassified
and left out of the adaptive-vs-plain comparison, by name.

    python experiments/lesson_optimizers.py                 # 10 optimizers, 10 epochs
    python experiments/lesson_optimizers.py --optimizers sgd,adam --quick
    python experiments/lesson_optimizers.py --import examples/custom_optimizer.py
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from jaxlab import distributed, lesson, plotting, verdicts
from jaxlab.errors import ConfigError
from jaxlab.optim import FAMILIES, FAMILY_NAMES, OPTIMIZERS, optimizer_defaults
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

TECHNIQUE = "1-7 optimizers"
EPOCHS_TO_COMPARE = 3  # "converge faster": the training loss early in training


def build_parser() -> argparse.ArgumentParser:
    out = lesson.parser(__doc__.split("\n\n")[0], epochs=10)
    out.add_argument(
        "--optimizers", default=None, help="comma-separated names (default: every registered one)"
    )
    return out


UNCLASSIFIED = "unclassified"
UNINFORMED = float(np.log(2))  # the loss of a model that learned nothing


def classify(names: list[str]) -> dict[str, list[str]]:
    """The optimizers by their declared family; those without one are ``unclassified``."""
    out = {family: [] for family in (*FAMILY_NAMES, UNCLASSIFIED)}
    for name in names:
        out[FAMILIES.get(name, UNCLASSIFIED)].append(name)
    return out


def loss_after(result: SweepResult, rate: float, epoch: int) -> np.ndarray:
    """Per seed, the training loss after ``epoch`` epochs at ``rate``; a seed that diverged
    counts as having learned nothing (ln 2)."""
    loss = lesson.at_epoch(result, {"learning_rate": rate}, epoch)
    return np.where(np.isnan(loss), UNINFORMED, loss)


def tuned(result: SweepResult) -> tuple[float, np.ndarray] | None:
    """The rate with the lowest mean min val_loss and its per-seed min val_loss."""
    rows = [r for r in result.summary() if "min_val_loss_mean" in r]
    if not rows:
        return None
    rate = min(rows, key=lambda r: r["min_val_loss_mean"])["learning_rate"]
    return rate, lesson.val_loss_minimum(result, {"learning_rate": rate})[0]


def judge(sweeps: dict[str, SweepResult]) -> list[lesson.Claim]:
    epochs = min(EPOCHS_TO_COMPARE, next(iter(sweeps.values())).histories["loss"].shape[-1])
    at_default = {
        name: loss_after(result, optimizer_defaults(name)["learning_rate"], epochs)
        for name, result in sweeps.items()
    }
    family = classify(list(sweeps))
    seeds = len(next(iter(sweeps.values())).values("seed"))
    adaptive, plain = (
        np.array([at_default[n] for n in family[f]]).reshape(-1, seeds)
        for f in ("adaptive", "plain")
    )
    gap = (-lesson.LOSS_GAP, lesson.LOSS_GAP_REASON)
    if len(adaptive) and len(plain):
        means = verdicts.paired(
            f"training loss after {epochs} epochs at the default rate, mean of the "
            "adaptive minus mean of the plain optimizers (per seed)",
            adaptive.mean(axis=0),
            plain.mean(axis=0),
            "<",
            *gap,
        )
        every = verdicts.paired(
            f"training loss after {epochs} epochs at the default rate, slowest "
            "adaptive minus fastest plain optimizer (per seed)",
            adaptive.max(axis=0),
            plain.min(axis=0),
            "<",
            *gap,
        )
    else:  # nothing to compare: no interval
        means = every = verdicts.one_sample("adaptive minus plain (needs both)", [], "<", *gap)
    ranking = sorted(at_default, key=lambda n: float(np.mean(at_default[n])))
    families = "; ".join(
        f"{f}: {', '.join(names) or 'none'}"
        for f, names in family.items()
        if names or f != UNCLASSIFIED
    )
    unclassified = family[UNCLASSIFIED]
    slowest = max(family["adaptive"], key=lambda n: float(np.mean(at_default[n])), default=None)
    fastest_plain = min(family["plain"], key=lambda n: float(np.mean(at_default[n])), default=None)
    claims = [
        lesson.claim(
            TECHNIQUE,
            "Adaptive methods converge faster at their default settings.",
            f"training loss after {epochs} epochs at the default rate: "
            + ", ".join(f"{n} {np.mean(at_default[n]):.3f}" for n in ranking)
            + f"; families: {families}"
            + (
                " (no family declared at registration: left out of this comparison)"
                if unclassified
                else ""
            ),
            dataclasses.replace(means, reading="the families' means"),
            [dataclasses.replace(every, reading="every adaptive faster than every plain")],
            "the families' means: the lesson ranks no optimizer ('Adam, RMSprop, SGD 등 다양한 "
            "옵티마이저가 있으며, 각각의 알고리즘은 특정한 학습 환경에 적합한 방법을 제공합니다': "
            "each suits its own setting), so 'adaptive methods' is read as the family, not "
            "every member",
            why=f"Families: {families}."
            + (
                f" The slowest adaptive optimizer at its default rate is {slowest} "
                f"({np.mean(at_default[slowest]):.3f}); the fastest plain one is "
                f"{fastest_plain} ({np.mean(at_default[fastest_plain]):.3f})."
                if slowest and fastest_plain
                else " The comparison needs at least one optimizer of each family."
            ),
        )
    ]
    best = {name: tuned(result) for name, result in sweeps.items()}
    best = {name: value for name, value in best.items() if value is not None}
    if best:
        # The best and the worst optimizer by their means, then their per-seed difference: its
        # mean is the spread of the means (picking the two extremes can only widen it).
        names = sorted(best, key=lambda n: float(np.nanmean(best[n][1])))
        first, worst = names[0], names[-1]
        grid = sweeps[worst].values("learning_rate")
        edge = best[worst][0] in (min(grid), max(grid))
        claims.append(
            lesson.claim(
                TECHNIQUE,
                "Tuned over the learning rate, the optimizers end up close (best min val_loss).",
                ", ".join(f"{n} {np.nanmean(best[n][1]):.3f} (lr {best[n][0]:g})" for n in names)
                + f"; spread {np.nanmean(best[worst][1]) - np.nanmean(best[first][1]):.3f}",
                verdicts.paired(
                    f"min val_loss at the best rate, worst ({worst}) minus best ({first}) "
                    "optimizer",
                    best[worst][1],
                    best[first][1],
                    "<",
                    lesson.LOSS_GAP,
                    lesson.LOSS_GAP_REASON,
                ),
                why=f"The farthest is {worst} at {np.nanmean(best[worst][1]):.3f} (lr "
                f"{best[worst][0]:g}"
                + (", at the edge of its grid: its best rate may lie beyond it" if edge else "")
                + f"), against {first}'s {np.nanmean(best[first][1]):.3f}.",
            )
        )
    return claims


def run(args: argparse.Namespace) -> None:
    names = args.optimizers.split(",") if args.optimizers else OPTIMIZERS.names()
    for name in names:
        OPTIMIZERS.get(name)  # unknown names fail before anything runs
    if not names:
        raise ConfigError("--optimizers needs at least one name")
    this = lesson.Run.from_args("lesson_optimizers", args)
    sweeps = {}
    for name in names:
        default = optimizer_defaults(name)["learning_rate"]
        grid = {"learning_rate": [default / 10, default, default * 10]}
        sweeps[name] = this.sweep(args, TrainConfig(optimizer=name), grid, name)
    if distributed.is_main():
        plot_at_default(sweeps, this.directory / "loss-at-default.png")
    this.finish(sweeps, judge(sweeps), "1-7 optimizers")


def plot_at_default(sweeps: dict[str, SweepResult], path) -> None:
    """Every optimizer's training and validation loss at its default rate, in one figure."""
    curves = {}
    for name, result in sweeps.items():
        curve = result.select({"learning_rate": optimizer_defaults(name)["learning_rate"]})
        epochs = np.arange(1, curve["loss"].shape[1] + 1)
        curves[name] = {"loss": curve["loss"], "epochs": epochs}
    plotting.plot_against(curves, path, "loss", title="1-7 optimizers at their default rate")


if __name__ == "__main__":
    lesson.main(build_parser, run)
