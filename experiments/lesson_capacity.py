"""1-4 Hidden layers and neurons: widths 4, 16, 64 and 512 (two hidden layers) and depths 1, 2
and 3 (16 units each), 5 seeds each; the 512-unit network is the expensive one.

The lesson (Chollet): the more capacity a network has, the sooner and the harder it overfits;
the 4-unit network starts overfitting later than the lesson's 16-unit one.

    python experiments/lesson_capacity.py              # 10 epochs: the 512-unit net needs ~6 min
    python experiments/lesson_capacity.py --quick
"""

from __future__ import annotations

import argparse

import numpy as np

from jaxlab import lesson, verdicts
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

WIDTHS = [4, 16, 64, 512]  # two hidden layers of this width
DEPTHS = [1, 2, 3]  # hidden layers of 16 units
SHAPES = [(w, w) for w in WIDTHS] + [(16,) * d for d in DEPTHS if d != 2]
TECHNIQUE = "1-4 capacity"


def build_parser() -> argparse.ArgumentParser:
    return lesson.parser(__doc__.split("\n\n")[0], epochs=10)


def parameter_count(hidden: tuple[int, ...], num_words: int = 10000) -> int:
    sizes = [num_words, *hidden, 1]
    return sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))


def per_seed(result: SweepResult, shape) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: the epoch of min val_loss (how soon it overfits) and how far val_loss climbs
    back from its minimum by the last epoch (how hard)."""
    best, epoch = lesson.val_loss_minimum(result, {"hidden": shape})
    final = result.select({"hidden": shape})["val_loss"][:, -1]
    return epoch, final - best


def per_seed_spearman(x, per_shape: list[np.ndarray]) -> np.ndarray:
    """Per seed, Spearman(x, the seed's values over the shapes); NaN for a seed with a gap."""
    table = np.array(per_shape).T  # seed x shape
    return np.array(
        [lesson.spearman(x, row) if np.isfinite(row).all() else np.nan for row in table]
    )


def judge(result: SweepResult) -> list[lesson.Claim]:
    rows = {tuple(row["hidden"]): row for row in result.summary()}

    def sooner(shape):
        return rows[shape]["epoch_min_val_loss_mean"]

    def harder(shape):  # how far val_loss climbs back from its minimum by the last epoch
        return rows[shape]["final_val_loss_mean"] - rows[shape]["min_val_loss_mean"]

    by_width = [(w, w) for w in WIDTHS]
    by_depth = [(16,) * d for d in DEPTHS]
    rho_sooner = lesson.spearman(WIDTHS, [sooner(s) for s in by_width])
    rho_harder = lesson.spearman(WIDTHS, [harder(s) for s in by_width])
    seeds = {shape: per_seed(result, shape) for shape in SHAPES + [(16, 16)]}
    rank_reason = "a clear monotone trend over the 4 widths, not a tendency"
    rank_test = "one-sample t on per-seed Spearman"
    wider_sooner = verdicts.one_sample(
        "Spearman(width, epoch of min val_loss), per seed",
        per_seed_spearman(WIDTHS, [seeds[s][0] for s in by_width]),
        "<",
        -0.5,
        rank_reason,
        rank_test,
        bounds=(-1, 1),
    )
    wider_harder = verdicts.one_sample(
        "Spearman(width, final minus min val_loss), per seed",
        per_seed_spearman(WIDTHS, [seeds[s][1] for s in by_width]),
        ">",
        0.5,
        rank_reason,
        rank_test,
        bounds=(-1, 1),
    )
    shallow, deep = by_depth[0], by_depth[-1]

    def listing(shapes, measure, fmt=".2f"):
        return ", ".join(f"{'-'.join(map(str, s))} {measure(s):{fmt}}" for s in shapes)

    def name(shape):
        return "-".join(map(str, shape))

    return [
        lesson.claim(
            TECHNIQUE,
            "Wider networks overfit sooner.",
            f"epoch of min val_loss: {listing(by_width, sooner, '.1f')}; "
            f"Spearman(width, epoch) = {rho_sooner:.2f}",
            wider_sooner,
            why=f"Over the seeds' means the rank correlation is {rho_sooner:.2f}; per seed: "
            + ", ".join(f"{v:.2f}" for v in wider_sooner.values)
            + ".",
        ),
        lesson.claim(
            TECHNIQUE,
            "Wider networks overfit harder.",
            f"final minus min val_loss: {listing(by_width, harder, '.3f')}; "
            f"Spearman(width, rise) = {rho_harder:.2f}",
            wider_harder,
            why=f"Over the seeds' means the rank correlation is {rho_harder:.2f}; the seeds' "
            "std of the rise: "
            + ", ".join(f"{name(s)} {np.nanstd(seeds[s][1]):.3f}" for s in by_width)
            + ".",
        ),
        lesson.claim(
            TECHNIQUE,
            "The 4-unit network starts overfitting later than the 16-unit one.",
            f"epoch of min val_loss: {listing(by_width[:2], sooner, '.1f')}",
            verdicts.paired(
                "epoch of min val_loss, 4-4 minus 16-16",
                seeds[(4, 4)][0],
                seeds[(16, 16)][0],
                ">",
                lesson.EPOCH_GAP,
                lesson.EPOCH_GAP_REASON,
            ),
            why=f"Epochs of the minimum: 4-4 {sooner((4, 4)):.1f}, 16-16 {sooner((16, 16)):.1f}.",
        ),
        lesson.claim(
            TECHNIQUE,
            "Deeper networks overfit sooner.",
            f"epoch of min val_loss: {listing(by_depth, sooner, '.1f')}",
            verdicts.paired(
                f"epoch of min val_loss, {name(deep)} minus {name(shallow)}",
                seeds[deep][0],
                seeds[shallow][0],
                "<",
                -lesson.EPOCH_GAP,
                lesson.EPOCH_GAP_REASON,
            ),
            why=f"Epochs of the minimum: {listing(by_depth, sooner, '.1f')}.",
        ),
        lesson.claim(
            TECHNIQUE,
            "Deeper networks overfit harder.",
            f"final minus min val_loss: {listing(by_depth, harder, '.3f')}",
            verdicts.paired(
                f"final minus min val_loss, {name(deep)} minus {name(shallow)}",
                seeds[deep][1],
                seeds[shallow][1],
                ">",
                lesson.LOSS_GAP,
                lesson.LOSS_GAP_REASON,
            ),
            why=f"Final minus min val_loss: {listing(by_depth, harder, '.3f')}.",
        ),
    ]


def run(args: argparse.Namespace) -> None:
    this = lesson.Run.from_args("lesson_capacity", args)
    counts = {"-".join(map(str, s)): parameter_count(s, args.num_words) for s in SHAPES}
    this.write_info(parameters=counts)
    result = this.sweep(args, TrainConfig(), {"hidden": SHAPES}, "capacity")
    this.finish({"capacity": result}, judge(result), "1-4 hidden layers and neurons")


if __name__ == "__main__":
    lesson.main(build_parser, run)
