"""1-4 Hidden layers and neurons: widths 4, 16, 64 and 512 (two hidden layers) and depths 1, 2
and 3 (16 units each), 5 seeds each; the 512-unit network is the expensive one.

The lesson (Chollet): the more capacity a network has, the sooner and the harder it overfits;
the 4-unit network starts overfitting later than the lesson's 16-unit one.

    python experiments/lesson_capacity.py              # 10 epochs: the 512-unit net needs ~6 min
    python experiments/lesson_capacity.py --quick
"""

from __future__ import annotations

import argparse

from jaxlab import lesson
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

    def listing(shapes, measure, fmt=".2f"):
        return ", ".join(f"{'-'.join(map(str, s))} {measure(s):{fmt}}" for s in shapes)

    return [
        lesson.Claim(
            TECHNIQUE,
            "Wider networks overfit sooner.",
            f"epoch of min val_loss: {listing(by_width, sooner, '.1f')}; "
            f"Spearman(width, epoch) = {rho_sooner:.2f}",
            rho_sooner < -0.5,
        ),
        lesson.Claim(
            TECHNIQUE,
            "Wider networks overfit harder.",
            f"final minus min val_loss: {listing(by_width, harder, '.3f')}; "
            f"Spearman(width, rise) = {rho_harder:.2f}",
            rho_harder > 0.5,
        ),
        lesson.Claim(
            TECHNIQUE,
            "The 4-unit network starts overfitting later than the 16-unit one.",
            f"epoch of min val_loss: {listing(by_width[:2], sooner, '.1f')}",
            sooner((4, 4)) > sooner((16, 16)),
        ),
        lesson.Claim(
            TECHNIQUE,
            "Deeper networks overfit sooner and harder.",
            f"epoch of min val_loss: {listing(by_depth, sooner, '.1f')}; "
            f"final minus min val_loss: {listing(by_depth, harder, '.3f')}",
            sooner(by_depth[-1]) <= sooner(by_depth[0])
            and harder(by_depth[-1]) > harder(by_depth[0]),
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
