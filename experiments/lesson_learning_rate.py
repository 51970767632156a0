"""1-3 Learning rate and epochs: a learning-rate grid from 1e-4 to 1e-1, vmapped, 5 seeds.

The lesson: the smaller the learning rate, the more epochs to reach the loss minimum; too small
may stall; too large oscillates or diverges.

    python experiments/lesson_learning_rate.py            # 7 rates x 5 seeds, 20 epochs
    python experiments/lesson_learning_rate.py --quick    # seconds
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from jaxlab import lesson, verdicts
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
TECHNIQUE = "1-3 learning rate"


def build_parser() -> argparse.ArgumentParser:
    out = lesson.parser(__doc__.split("\n\n")[0])
    out.add_argument("--optimizer", default="rmsprop")
    return out


SLOW_MEANS = (
    "the full budget: the lesson tells slow from stalled. '작은 학습률을 사용하면 ... 손실 "
    "함수의 최저값에 점차적으로 가까워지지만, 수렴하는 데 더 많은 반복이 필요할 수 있습니다' (a "
    "small rate gets there slowly: the first claim) vs '학습률을 너무 낮게 설정하면 최적값에 "
    "수렴하지 못하거나 지역 최적값에 갇힐 수도 있습니다' (too low a rate may never converge or "
    "get stuck): not getting there at all, so the longest budget run"
)


def per_seed_spearman(result: SweepResult, rates: list[float]) -> np.ndarray:
    """Per seed, Spearman(log rate, epoch of min val_loss) over the rates it did not diverge at."""
    epochs = np.array([lesson.val_loss_minimum(result, {"learning_rate": r})[1] for r in rates])
    out = []
    for column in epochs.T:  # one seed
        ok = np.isfinite(column)
        out.append(
            lesson.spearman(np.log(np.asarray(rates)[ok]), column[ok]) if ok.sum() > 2 else np.nan
        )
    return np.array(out)


def judge(result: SweepResult) -> list[lesson.Claim]:
    rows = {row["learning_rate"]: row for row in result.summary()}
    healthy = [rate for rate in RATES if "epoch_min_val_loss_mean" in rows[rate]]
    epochs_to_min = [rows[rate]["epoch_min_val_loss_mean"] for rate in healthy]
    rho = lesson.spearman(np.log(healthy), epochs_to_min)
    smallest, default, largest = RATES[0], 1e-3, RATES[-1]
    epochs = result.histories["loss"].shape[-1]
    slow = rows[smallest]
    diverged_large = rows[largest]["diverged"]
    rises_large = lesson.loss_rises(result, {"learning_rate": largest})
    rises_default = lesson.loss_rises(result, {"learning_rate": default})
    trend = verdicts.one_sample(
        "Spearman(log rate, epoch of min val_loss), per seed",
        per_seed_spearman(result, RATES),
        "<",
        -0.5,
        "a clear monotone trend over the rates, not a tendency",
        "one-sample t on per-seed Spearman",
        bounds=(-1, 1),
    )
    # Too small a rate: its best val_loss minus the default rate's, within a budget.
    best_default, epoch_default = lesson.val_loss_minimum(result, {"learning_rate": default})
    early = int(np.nanmedian(epoch_default)) if np.isfinite(epoch_default).any() else 1
    stall = {}
    for budget in (epochs, early):
        best_small = lesson.val_loss_minimum(result, {"learning_rate": smallest}, budget)[0]
        stall[budget] = dataclasses.replace(
            verdicts.paired(
                f"min val_loss within {budget} epochs, lr {smallest:g} minus lr {default:g}'s "
                "minimum",
                best_small,
                best_default,
                ">",
                lesson.LOSS_GAP,
                lesson.LOSS_GAP_REASON,
            ),
            reading=f"after {budget} epochs"
            + (
                " (the full budget)"
                if budget == epochs
                else f" (lr {default:g}'s median epoch of minimum)"
            ),
        )
    stalled = stall[epochs].verdict
    small_curve = np.nanmean(result.select({"learning_rate": smallest})["val_loss"], axis=0)
    oscillation = verdicts.paired(
        f"epochs in which the training loss rose, lr {largest:g} minus lr {default:g} (a "
        "diverged seed counts every epoch)",
        lesson.rises_per_seed(result, {"learning_rate": largest}),
        lesson.rises_per_seed(result, {"learning_rate": default}),
        ">",
        lesson.EPOCH_GAP,
        lesson.EPOCH_GAP_REASON,
    )
    return [
        lesson.claim(
            TECHNIQUE,
            "The smaller the learning rate, the more epochs to the minimum validation loss.",
            "epochs to min val_loss by rate: "
            + ", ".join(f"{r:g}: {e:.1f}" for r, e in zip(healthy, epochs_to_min, strict=True))
            + f"; Spearman(rate, epochs) = {rho:.2f}",
            trend,
            why=f"Over the seeds' means the rank correlation is {rho:.2f}.",
        ),
        lesson.claim(
            TECHNIQUE,
            "Too small a rate stalls: it stays far from the minimum the default rate reaches.",
            f"lr {smallest:g}: min val_loss {slow['min_val_loss_mean']:.3f} at epoch "
            f"{slow['epoch_min_val_loss_mean']:.1f} of {epochs}, vs "
            f"{rows[default]['min_val_loss_mean']:.3f} at lr {default:g}",
            stall[epochs],
            [stall[early]] if early != epochs else [],
            SLOW_MEANS,
            why=(f"lr {smallest:g} is slow, not stuck: " if stalled == verdicts.FAILS else "")
            + f"its mean val_loss goes {small_curve[max(epochs - 2, 0)]:.3f} -> "
            f"{small_curve[-1]:.3f} in the last epoch and ends {stall[epochs].estimate:+.3f} "
            f"from lr {default:g}'s minimum; after {early} epochs, where lr {default:g} is at "
            f"its minimum, it is {stall[early].estimate:+.3f} behind (slowness, the first "
            "claim).",
        ),
        lesson.claim(
            TECHNIQUE,
            "Too large a rate oscillates or diverges.",
            f"lr {largest:g}: {diverged_large}/{len(result.values('seed'))} seeds diverged, "
            f"training loss rose in {rises_large:.1f} epochs on average "
            f"(lr {default:g}: {rises_default:.1f})",
            oscillation,
            why=f"At lr {largest:g} {diverged_large} seeds diverged and the training loss rose "
            f"in {rises_large:.1f} epochs per seed, against {rises_default:.1f} at lr {default:g}.",
        ),
    ]


def run(args: argparse.Namespace) -> None:
    this = lesson.Run.from_args("lesson_learning_rate", args)
    result = this.sweep(
        args, TrainConfig(optimizer=args.optimizer), {"learning_rate": RATES}, "learning_rate"
    )
    this.finish({"learning_rate": result}, judge(result), f"1-3 learning rate ({args.optimizer})")


if __name__ == "__main__":
    lesson.main(build_parser, run)
