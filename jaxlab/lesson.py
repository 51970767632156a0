"""What the lesson-suite scripts share: options, data, running a sweep, and claims.

Each script states the lesson's claims for one technique, measures them across seeds with the
sweep engine, and records every verdict with the numbers it was computed from.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxlab import cli, distributed, plotting, results, verdicts
from jaxlab.errors import ConfigError
from jaxlab.imdb import load_imdb_multi_hot
from jaxlab.sweep import run_sweep
from jaxlab.sweep_results import SweepResult, summary_table
from jaxlab.train import TrainConfig
from jaxlab.verdicts import Verdict

QUICK = {"limit": 1000, "epochs": 2, "seeds": 2}
# The smallest validation-loss gap the suite counts as a real difference, and why.
LOSS_GAP = 0.02
LOSS_GAP_REASON = "0.02 nats: ~7% of the lesson network's best val_loss, 3% of ln 2"
# The smallest difference in a whole-epoch count (epoch of the minimum, rising epochs).
EPOCH_GAP = 0.5
EPOCH_GAP_REASON = "counts are whole epochs: one epoch in at least every other seed"


@dataclasses.dataclass(frozen=True)
class Claim:
    """One of the lesson's statements and what the data says about it.

    ``judged`` is the reading the lesson means (``meaning`` says which, citing it); other
    readings of the same statement (another budget, another quantity) are in ``readings``.
    ``explanation`` says, from the evidence, why a claim does not hold or is inconclusive.
    """

    technique: str
    statement: str
    evidence: str
    judged: Verdict
    readings: tuple[Verdict, ...] = ()
    meaning: str = ""
    explanation: str = ""

    @property
    def verdict(self) -> str:
        return self.judged.verdict

    @property
    def holds(self) -> bool:
        return self.judged.verdict == verdicts.HOLDS

    def as_json(self) -> dict[str, Any]:
        """The judged reading's fields at the top level, beside ``holds`` and the readings."""
        return {
            "technique": self.technique,
            "statement": self.statement,
            "evidence": self.evidence,
            **self.judged.as_json(),
            "holds": self.holds,
            "meaning": self.meaning,
            "explanation": self.explanation,
            "readings": [reading.as_json() for reading in self.readings],
        }


def claim(
    technique: str,
    statement: str,
    evidence: str,
    judged: Verdict,
    readings: Sequence[Verdict] = (),
    meaning: str = "",
    why: str = "",
) -> Claim:
    """A :class:`Claim`; unless it holds, its explanation is ``why`` (a sentence filled from the
    evidence) followed by what the interval says."""
    explanation = ""
    if judged.verdict != verdicts.HOLDS:
        explanation = " ".join(filter(None, [why, verdicts.explain(judged.as_json())]))
    return Claim(technique, statement, evidence, judged, tuple(readings), meaning, explanation)


def claims_table(claims: Sequence[Claim]) -> str:
    return "\n".join(verdicts.claim_rows([c.as_json() for c in claims]))


def spearman(x, y) -> float:
    """Rank correlation of two sequences (ties get their average rank); 0 if one is constant."""

    def ranks(values):
        order = np.argsort(values, kind="stable")
        rank = np.empty(len(values))
        rank[order] = np.arange(len(values))
        for value in np.unique(values):  # average ties
            rank[values == value] = rank[values == value].mean()
        return rank

    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def loss_rises(result: SweepResult, config: Mapping[str, Any], metric: str = "loss") -> float:
    """Mean number of epochs (over seeds that did not diverge) whose ``metric`` rose over the
    previous epoch's: how much training oscillates."""
    loss = result.select(config)[metric]
    rises = np.sum(np.diff(loss, axis=1) > 0, axis=1).astype(float)
    return float(np.nanmean(np.where(np.isnan(loss).any(axis=1), np.nan, rises)))


def rises_per_seed(result: SweepResult, config: Mapping[str, Any]) -> np.ndarray:
    """Per seed, the number of epochs whose training loss rose over the previous epoch's; a
    seed that diverged counts every epoch after the first (as unstable as a run can be)."""
    loss = result.select(config)["loss"]
    rises = np.sum(np.diff(loss, axis=1) > 0, axis=1).astype(float)
    return np.where(np.isnan(loss).any(axis=1), loss.shape[1] - 1.0, rises)


def at_epoch(
    result: SweepResult, config: Mapping[str, Any], epoch: int, metric: str = "loss"
) -> np.ndarray:
    """Per seed, ``metric`` after ``epoch`` epochs (1-based, at most the last one); NaN for a
    seed that diverged."""
    values = result.select(config)[metric]
    return values[:, min(epoch, values.shape[1]) - 1]


def val_loss_minimum(
    result: SweepResult, config: Mapping[str, Any], epochs: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per seed, the minimum validation loss within the first ``epochs`` epochs (default: all)
    and the epoch (1-based) it was reached; NaN for a seed that diverged."""
    val_loss = result.select(config)["val_loss"][:, :epochs]
    bad = np.isnan(val_loss).any(axis=1)
    clean = np.where(np.isnan(val_loss), np.inf, val_loss)
    epoch = np.where(bad, np.nan, clean.argmin(axis=1) + 1.0)
    return np.where(bad, np.nan, clean.min(axis=1)), epoch


def loss_at(result: SweepResult, config: Mapping[str, Any], epoch: int) -> tuple[float, float]:
    """Training loss after ``epoch`` epochs (1-based): mean and std over seeds; inf if a seed
    diverged."""
    loss = result.select(config)["loss"][:, epoch - 1]
    if not np.isfinite(loss).all():
        return float("inf"), 0.0
    return float(loss.mean()), float(loss.std())


def parser(description: str, seeds: int = 5, epochs: int = 20) -> argparse.ArgumentParser:
    """The options every lesson script has."""
    out = argparse.ArgumentParser(description=description)
    out.add_argument("--seeds", type=int, default=seeds, help="number of seeds (0..N-1)")
    out.add_argument("--epochs", type=int, default=epochs)
    out.add_argument("--limit", type=int, default=None, help="first N reviews per split")
    out.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK['limit']} reviews, {QUICK['epochs']} epochs, "
        f"{QUICK['seeds']} seeds (its verdicts are not evidence)",
    )
    cli.add_data_args(out)
    cli.add_run_args(out)
    return out


@dataclasses.dataclass
class Run:
    """A lesson script's settings after ``--quick`` is applied, and its results folder."""

    name: str
    seeds: list[int]
    epochs: int
    limit: int | None
    quick: bool
    directory: Path
    started: float = dataclasses.field(default_factory=time.perf_counter)
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_args(cls, name: str, args: argparse.Namespace) -> Run:
        seeds, epochs, limit = args.seeds, args.epochs, args.limit
        if args.quick:
            seeds, epochs, limit = QUICK["seeds"], QUICK["epochs"], QUICK["limit"]
        if seeds < 1 or epochs < 1:
            raise ConfigError(f"--seeds and --epochs must be positive, got {seeds}, {epochs}")
        if args.out is not None and not args.resume:
            results.check_out_root(args.out)
        run = cls(name, list(range(seeds)), epochs, limit, args.quick, Path())
        run.data(args)  # the data is there and readable before a run folder is made
        run.directory = cli.run_dir(args, name)
        return run

    def data(self, args: argparse.Namespace, num_words: int | None = None):
        """IMDB as model inputs, ``num_words`` (default ``--num-words``) wide, loaded once."""
        if not hasattr(self, "_data"):
            num_words = args.num_words if num_words is None else num_words
            self._data = load_imdb_multi_hot(num_words, args.data_dir, self.limit)
        return self._data

    def sweep(
        self,
        args: argparse.Namespace,
        base: TrainConfig,
        grid: Mapping[str, Sequence],
        name: str = "sweep",
        data: tuple | None = None,
        epochs: int | None = None,
        **options: Any,
    ) -> SweepResult:
        """Runs ``grid`` x seeds from ``base`` into ``<run>/<name>``, saving after every epoch.

        ``data`` is ``(train, validation)`` (default: the lesson's multi-hot IMDB); ``epochs``
        defaults to this run's.
        """
        base = dataclasses.replace(base, epochs=epochs or self.epochs)
        directory = self.directory / name

        def save(result: SweepResult) -> None:
            if distributed.is_main():
                result.save(directory)
            progress = {"epochs_done": len(result.seconds), **result.progress()}
            self.write_info(**{name: {"base": base, "grid": grid, **progress}})

        result = run_sweep(
            base,
            grid,
            self.seeds,
            *(data or self.data(args)),
            verbose=not args.quiet,
            on_epoch_end=save,
            checkpoint_dir=directory / "checkpoints",
            checkpoint_every=args.checkpoint_every,
            resume=bool(args.resume),
            **options,
        )
        save(result)
        return result

    def write_info(self, **info: Any) -> None:
        """Adds ``info`` to what ``run.json`` records (earlier entries are kept)."""
        self.info.update(info)
        if not distributed.is_main():
            return
        results.write_run_info(
            self.directory,
            experiment=self.name,
            seeds=self.seeds,
            quick=self.quick,
            wall_seconds=time.perf_counter() - self.started,
            **self.info,
        )

    def finish(self, sweeps: Mapping[str, SweepResult], claims: Sequence[Claim], title: str):
        """Saves a bands figure and a summary per sweep and the claims; prints them."""
        if not distributed.is_main():
            return
        summaries = []
        for name, result in sweeps.items():
            figure = self.directory / f"bands-{name}.png"
            plotting.plot_bands(result.curves(), figure, title=f"{title}: {name}")
            summaries.append(f"{name}:\n\n{summary_table(result)}")
        summary = "\n\n".join(summaries)
        table = claims_table(claims)
        if self.quick:
            table += "\n\n(quick mode: too little data and too few epochs for these verdicts)"
        (self.directory / "summary.md").write_text(summary + "\n")
        (self.directory / "claims.md").write_text(table + "\n")
        results.write_json(self.directory / "claims.json", [c.as_json() for c in claims])
        print(summary, table, f"results in {self.directory}", sep="\n\n")


def main(build: Callable[[], argparse.ArgumentParser], run: Callable) -> None:
    """Entry point of a lesson script: clean errors, interrupted runs keep their results."""
    cli.run(run, build())
