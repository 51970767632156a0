"""1-2 Scaling: binary multi-hot vs raw word counts vs counts standardized (z-score) vs
min-max normalized, each under SGD and under RMSprop at their Keras defaults, 5 seeds.

The lesson: scaling evens out the ranges of the features and speeds up or stabilizes training.
Statistics come from the training split only. Standardized counts stay sparse: the mean is
folded into the first layer, ((x - m) / s) @ W = (x / s) @ W - (m / s) @ W.

    python experiments/lesson_scaling.py
    python experiments/lesson_scaling.py --quick
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from jaxlab import lesson, verdicts
from jaxlab.encoding import SparseFeatures, as_features
from jaxlab.imdb import load_imdb_features
from jaxlab.scaling import column_stats, scale_splits
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

# name -> (features loaded, scaling fitted on the training split)
INPUTS = {
    "multi_hot": ("multi_hot", "none"),
    "counts": ("counts", "none"),
    "standardized": ("counts", "standardize"),
    "min_max": ("counts", "min_max"),
}
SCALED = ("standardized", "min_max")
OPTIMIZERS = ["sgd", "rmsprop"]
EARLY_EPOCH = 2  # "speeds up training": the training loss this early
TECHNIQUE = "1-2 scaling"


def build_parser() -> argparse.ArgumentParser:
    return lesson.parser(__doc__.split("\n\n")[0])


def feature_ranges(x: SparseFeatures) -> dict[str, float]:
    """How uneven the columns are: largest over median column range and column std (columns
    that vary), and the largest value."""
    stats = column_stats(SparseFeatures(x.indices, x.offsets, x.values, x.dim))
    low, high = stats.min, stats.max
    if x.shift is not None:  # column_stats sees the unshifted part; the shift moves both ends
        low, high = low - x.shift, high - x.shift
    spread = high - low
    varies = spread > 0
    return {
        "range_ratio": float(spread[varies].max() / np.median(spread[varies])),
        "std_ratio": float(stats.std[varies].max() / np.median(stats.std[varies])),
        "largest": float(np.abs(np.concatenate([low, high])).max()),
    }


def steadier(measures, name: str, than: str) -> bool:
    """Better than ``than`` on at least one of the (lower-is-better) measures, worse on none."""
    pairs = [(m[name], m[than]) for m in measures]
    return all(a <= b for a, b in pairs) and any(a < b for a, b in pairs)


def unevenness(ranges: dict[str, float]) -> float:
    """How uneven the columns are: the lower of the range and std ratios."""
    return min(ranges["range_ratio"], ranges["std_ratio"])


def scaling_test(quantity, per_seed, counts, reason, reading=""):
    """Per seed, a scaled input's value minus the raw counts' (lower is better), paired."""
    test = verdicts.paired(quantity, per_seed, counts, "<", *reason)
    return dataclasses.replace(test, reading=reading)


def judge(sweeps: dict[str, SweepResult], ranges: dict[str, dict]) -> list[lesson.Claim]:
    claims = [
        lesson.claim(
            TECHNIQUE,
            "Scaling evens out the features' ranges.",
            "largest / median column range (std): "
            + ", ".join(
                f"{name} {r['range_ratio']:.3g} ({r['std_ratio']:.3g})"
                for name, r in ranges.items()
            )
            + "; largest value: "
            + ", ".join(f"{name} {r['largest']:.3g}" for name, r in ranges.items()),
            verdicts.deterministic(
                "unevenness (lower of the range and std ratios) of the less even scaled input "
                "/ the raw counts'",
                max(unevenness(ranges[s]) for s in SCALED) / unevenness(ranges["counts"]),
                "<",
                0.5,
                "'evens out': at least halves the raw counts' unevenness",
            ),
            why="The ratios are computed on the training split, which the scalings were fitted on.",
        )
    ]
    for optimizer in OPTIMIZERS:
        config = {"optimizer": optimizer}
        early = {
            name: lesson.loss_at(result, config, EARLY_EPOCH) for name, result in sweeps.items()
        }
        rises = {name: lesson.loss_rises(result, config) for name, result in sweeps.items()}
        rows = {
            name: result.summary()[OPTIMIZERS.index(optimizer)] for name, result in sweeps.items()
        }
        spread = {name: row.get("min_val_loss_std", float("nan")) for name, row in rows.items()}
        diverged = {name: row["diverged"] for name, row in rows.items()}
        faster = [s for s in SCALED if early[s][0] < early["counts"][0]]
        best = {name: row.get("min_val_loss_mean", float("nan")) for name, row in rows.items()}
        steady = [s for s in SCALED if steadier((diverged, rises, spread), s, "counts")]
        # Per seed, a diverged seed's loss is NaN (that pair is left out) and it counts as
        # rising in every epoch.
        loss = {name: lesson.at_epoch(r, config, EARLY_EPOCH) for name, r in sweeps.items()}
        rising = {name: lesson.rises_per_seed(r, config) for name, r in sweeps.items()}
        speed = (
            f"training loss after epoch {EARLY_EPOCH}",
            (-lesson.LOSS_GAP, lesson.LOSS_GAP_REASON),
        )
        stable = (
            "epochs in which the training loss rose",
            (-lesson.EPOCH_GAP, lesson.EPOCH_GAP_REASON),
        )
        judged = {}
        for (measure, reason), per_seed in ((speed, loss), (stable, rising)):
            best_of = np.fmin(per_seed["standardized"], per_seed["min_max"])
            judged[measure] = [
                scaling_test(
                    f"{measure}, the better scaling (per seed) minus raw counts",
                    best_of,
                    per_seed["counts"],
                    reason,
                    "the better of the two scalings",
                ),
                *(
                    scaling_test(
                        f"{measure}, {s} minus raw counts",
                        per_seed[s],
                        per_seed["counts"],
                        reason,
                        s,
                    )  # fmt: skip
                    for s in SCALED
                ),
            ]
        meaning = (
            "either scaling: the lesson offers both, '표준화(Standardization)와 "
            "정규화(Normalization)는 데이터 전처리 기법으로, 데이터를 모델에 사용하기 전에 "
            "스케일을 조정하는 방법입니다' (both adjust the scale before training); each is also "
            "judged alone"
        )
        claims.append(
            lesson.claim(
                TECHNIQUE,
                f"Scaling the counts speeds up training ({optimizer}).",
                f"training loss after epoch {EARLY_EPOCH}: "
                + ", ".join(f"{n} {m:.3f} ± {s:.3f}" for n, (m, s) in early.items())
                + f"; faster than raw counts: {', '.join(faster) or 'none'}; min val_loss: "
                + ", ".join(f"{n} {v:.3f}" for n, v in best.items()),
                judged[speed[0]][0],
                judged[speed[0]][1:],
                meaning,
                why=f"With {optimizer}, after epoch {EARLY_EPOCH} the raw counts are at "
                f"{early['counts'][0]:.3f}, standardized counts at "
                f"{early['standardized'][0]:.3f} and min-max counts at {early['min_max'][0]:.3f} "
                "(min-max divides each count by its column's range, so most inputs shrink "
                "towards 0).",
            )
        )
        claims.append(
            lesson.claim(
                TECHNIQUE,
                f"Scaling the counts stabilizes training ({optimizer}).",
                "epochs in which the training loss rose (mean over seeds): "
                + ", ".join(f"{n} {v:.1f}" for n, v in rises.items())
                + "; seed std of min val_loss: "
                + ", ".join(f"{n} {v:.4f}" for n, v in spread.items())
                + "; diverged seeds: "
                + ", ".join(f"{n} {v}" for n, v in diverged.items())
                + f"; better on one of these and worse on none: {', '.join(steady) or 'none'}",
                judged[stable[0]][0],
                judged[stable[0]][1:],
                meaning,
                why=f"With {optimizer} the training loss rose in {rises['counts']:.1f} epochs "
                f"per seed with raw counts ({diverged['counts']} seeds diverged), "
                f"{rises['standardized']:.1f} standardized and {rises['min_max']:.1f} min-max.",
            )
        )
    return claims


def load_inputs(args: argparse.Namespace, limit: int | None) -> dict[str, tuple]:
    """Each input representation as ``(train, validation)`` with labels."""
    loaded = {
        kind: load_imdb_features(kind, args.num_words, args.data_dir, limit)
        for kind in ("multi_hot", "counts")
    }
    out = {}
    for name, (kind, scaling) in INPUTS.items():
        (x, y), (vx, vy) = loaded[kind]
        x, vx = scale_splits(scaling, x, vx)
        out[name] = ((x, y), (vx, vy))
    return out


def run(args: argparse.Namespace) -> None:
    this = lesson.Run.from_args("lesson_scaling", args)
    inputs = load_inputs(args, this.limit)
    ranges = {name: feature_ranges(as_features(train[0])) for name, (train, _) in inputs.items()}
    sweeps = {
        name: this.sweep(args, TrainConfig(), {"optimizer": OPTIMIZERS}, name, data=data)
        for name, data in inputs.items()
    }
    this.write_info(feature_ranges=ranges)
    this.finish(sweeps, judge(sweeps, ranges), "1-2 scaling")


if __name__ == "__main__":
    lesson.main(build_parser, run)
