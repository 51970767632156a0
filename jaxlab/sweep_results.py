"""A sweep's histories with named axes, their summaries over seeds, and their files."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxlab.atomic import write_atomically
from jaxlab.errors import ConfigError
from jaxlab.results import to_jsonable, write_json

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")

# Divergence. A model diverged at the first epoch (0-based) where either
#   - its training or validation loss is NaN or infinite, or
#   - it is stuck worse than an uninformed guess: from its third epoch on, this epoch and the
#     one before it both have (a) a training loss no more than STUCK_MARGIN (1%) below the
#     first epoch's, (b) a training loss above STUCK_FACTOR (2) times that of an uninformed
#     prediction, and (c) a training accuracy at most CHANCE_POINTS (5 points) above chance.
# (b) is what spares slow learners: SGD at 1e-5 or 1e-4, zero initialization or a large rate
# before it settles sit at or below the uninformed loss (ln 2) near chance accuracy, while a
# model blown into saturation sits at the clipped loss (8.06 for balanced labels). Checked on
# the lesson's runs (docs/lesson-report) and on every optimizer at 1e-5 ... 1e-1 on IMDB (20
# epochs, 2 seeds): only rmsprop_keras2 at 0.1, seed 0, stuck at 8.059 for 20 epochs, is
# flagged (none of them would be with a 10% margin, a factor 1.2 and no accuracy test). (b)
# (b) needs the loss's uninformed value, known for binary cross-entropy (ln 2, the loss of
# predicting 1/2, where a fresh network starts); other losses diverge by a non-finite loss
# only. Chance in (c) is the training labels' majority rate (0.5 for IMDB's balanced labels),
# what always predicting the most common label scores: a model stuck at saturation on that
# label has that accuracy and a loss far above ln 2 unless the minority is under ~9%.
STUCK_MARGIN = 0.01
STUCK_FACTOR = 2.0
CHANCE_POINTS = 0.05
UNINFORMED = {"binary_crossentropy": float(np.log(2))}  # loss: its value predicting 1/2


def majority_rate(labels: Any) -> float:
    """The share of the most common label, what always predicting it scores."""
    _, counts = np.unique(np.asarray(labels).ravel(), return_counts=True)
    return float(counts.max() / counts.sum()) if counts.size else 0.5


def _stuck(loss, accuracy, epoch: int, loss_name: str, chance: float) -> bool:
    uninformed = UNINFORMED.get(loss_name)
    return (
        uninformed is not None
        and loss[epoch] >= (1 - STUCK_MARGIN) * loss[0]
        and loss[epoch] > STUCK_FACTOR * uninformed
        and accuracy[epoch] <= chance + CHANCE_POINTS
    )


def diverges_at(
    history: Mapping[str, Sequence[float]], epoch: int, loss_name: str, chance: float = 0.5
) -> bool:
    """Whether a model with this history (``loss``, ``accuracy``, ``val_loss`` up to at least
    ``epoch``) diverges at ``epoch`` by the rule above (given it had not before); ``chance``:
    the majority rate of its training labels."""
    loss, accuracy = history["loss"], history["accuracy"]
    if not (np.isfinite(loss[epoch]) and np.isfinite(history["val_loss"][epoch])):
        return True
    return (
        epoch >= 2
        and _stuck(loss, accuracy, epoch - 1, loss_name, chance)
        and _stuck(loss, accuracy, epoch, loss_name, chance)
    )


def divergence_note(history: Mapping[str, Sequence[float]], epoch: int) -> str:
    """Why a model diverged at ``epoch`` (0-based), for messages: ``"loss nan"``, or its
    training loss and accuracy there and its first epoch's loss."""
    for name in ("loss", "val_loss"):
        if not np.isfinite(history[name][epoch]):
            return f"{name} {float(history[name][epoch])}"
    return (
        f"training loss {history['loss'][epoch]:.4g} and accuracy "
        f"{history['accuracy'][epoch]:.3f}, no better than chance, since epoch 1's loss of "
        f"{history['loss'][0]:.4g}"
    )


@dataclasses.dataclass
class SweepResult:
    """Per-model histories, ``histories[metric][i_axis0, ..., i_seed, epoch]``.

    ``axes`` lists ``(name, values)`` in grid order, then ``("seed", seeds)``. Models that
    diverged (a NaN or infinite loss, or stuck above the uninformed loss at chance accuracy:
    :func:`diverges_at`) have ``diverged_epoch >= 0`` (0-based) and are left out of
    :meth:`summary`; NaN marks epochs not (yet) run.
    """

    axes: list[tuple[str, list]]
    histories: dict[str, np.ndarray]
    diverged_epoch: np.ndarray
    seconds: list[float]
    meta: dict[str, Any]
    timings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    final_params: list[tuple[dict, dict, Any]] = dataclasses.field(default_factory=list)
    # The running group's TrainState, models first (padded to the device count), as of the
    # epoch just recorded: read it in on_epoch_end, as the next epoch reuses its buffers.
    # After the sweep, the last group's final state. Not saved.
    state: Any = dataclasses.field(default=None, repr=False)

    @classmethod
    def empty(cls, base, grid: Mapping[str, Sequence], seeds, data_order: str, data_seed: int):
        axes = [(name, list(values)) for name, values in grid.items()] + [("seed", list(seeds))]
        shape = tuple(len(values) for _, values in axes)
        nan = np.full((*shape, base.epochs), np.nan, np.float32)
        return cls(
            axes=axes,
            histories={metric: nan.copy() for metric in METRICS},
            diverged_epoch=np.full(shape, -1, np.int32),
            seconds=[],
            meta={"base": to_jsonable(base), "data_order": data_order, "data_seed": data_seed},
        )

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.axes]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(values) for _, values in self.axes)

    def values(self, name: str) -> list:
        return dict(self.axes)[name]

    def _index(self, name: str, value) -> int:
        return self.values(name).index(value)

    def record(
        self,
        group_fixed: Mapping[str, Any],
        vmapped: Mapping[str, Sequence],
        epoch: int,
        metrics: Mapping[str, np.ndarray],
    ) -> None:
        """Stores one epoch of a compiled group; its models are ``product(vmapped, seeds)``.
        A model that diverges there (the rule above :func:`diverges_at`) gets its
        ``diverged_epoch``."""
        loss_name = dict(group_fixed).get("loss", self.meta.get("base", {}).get("loss"))
        chance = self.meta.get("majority_rate", 0.5)
        order = [*vmapped, "seed"]
        combos = itertools.product(*[vmapped[name] for name in vmapped], self.values("seed"))
        for model, combo in enumerate(combos):
            where = dict(zip(order, combo, strict=True)) | dict(group_fixed)
            index = tuple(self._index(name, where[name]) for name in self.names)
            for metric in METRICS:
                self.histories[metric][(*index, epoch)] = metrics[metric][model]
            if self.diverged_epoch[index] < 0:
                history = {metric: self.histories[metric][index] for metric in METRICS}
                if diverges_at(history, epoch, loss_name, chance):
                    self.diverged_epoch[index] = epoch

    def params_of(self, config: Mapping[str, Any]):
        """Final parameters of one config's models, stacked over seeds (``keep_params=True``)."""
        for group_fixed, vmapped, params in self.final_params:
            if any(config[name] != value for name, value in group_fixed.items()):
                continue
            combos = list(itertools.product(*vmapped.values()))
            position = combos.index(tuple(config[name] for name in vmapped))
            seeds = len(self.values("seed"))
            rows = slice(position * seeds, (position + 1) * seeds)
            return jax.tree.map(lambda leaf, rows=rows: leaf[rows], params)
        raise KeyError(f"no parameters kept for {config}; run the sweep with keep_params=True")

    def diverged_count(self) -> int:
        return int(np.sum(self.diverged_epoch >= 0))

    def progress(self) -> dict[str, Any]:
        """How far the sweep got: compiled groups done of all, and whether it is complete."""
        return {
            "groups_done": self.meta.get("groups_done", 0),
            "groups": self.meta.get("groups"),
            "complete": self.meta.get("complete", False),
        }

    def configs(self) -> list[dict[str, Any]]:
        """Every combination of the non-seed axes, as ``{name: value}``."""
        axes = self.axes[:-1]
        return [
            dict(zip([n for n, _ in axes], combo, strict=True))
            for combo in itertools.product(*[values for _, values in axes])
        ]

    def select(self, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """One config's histories, ``[seed, epoch]`` per metric, diverged seeds as NaN rows."""
        index = tuple(self._index(name, config[name]) for name in self.names[:-1])
        out = {metric: self.histories[metric][index].copy() for metric in METRICS}
        bad = self.diverged_epoch[index] >= 0
        for values in out.values():
            values[bad] = np.nan
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Per config, over its seeds that did not diverge: the lesson's key numbers."""
        rows = []
        for config in self.configs():
            curves = self.select(config)
            index = tuple(self._index(name, config[name]) for name in self.names[:-1])
            diverged = self.diverged_epoch[index] >= 0
            run = ~np.isnan(self.histories["loss"][index]).all(axis=1) | diverged
            ok = run & ~diverged
            row = {**config, "seeds": int(ok.size), "seeds_run": int(run.sum())}
            row["diverged"] = int(diverged.sum())
            if ok.any():
                val_loss, val_acc = curves["val_loss"][ok], curves["val_accuracy"][ok]
                done = ~np.isnan(val_loss).any(axis=0)
                val_loss, val_acc = val_loss[:, done], val_acc[:, done]
                stats = {
                    "peak_val_accuracy": val_acc.max(axis=1),
                    "epoch_peak_val_accuracy": val_acc.argmax(axis=1) + 1.0,
                    "min_val_loss": val_loss.min(axis=1),
                    "epoch_min_val_loss": val_loss.argmin(axis=1) + 1.0,
                    "final_val_loss": val_loss[:, -1],
                    "final_val_accuracy": val_acc[:, -1],
                    "final_accuracy": curves["accuracy"][ok][:, done][:, -1],
                }
                for name, per_seed in stats.items():
                    row[f"{name}_mean"] = float(per_seed.mean())
                    row[f"{name}_std"] = float(per_seed.std())
                    row[f"{name}_min"] = float(per_seed.min())
                    row[f"{name}_max"] = float(per_seed.max())
            rows.append(row)
        return rows

    def label(self, config: Mapping[str, Any]) -> str:
        return ", ".join(f"{name}={_short(value)}" for name, value in config.items()) or "all"

    def curves(self) -> dict[str, dict[str, np.ndarray]]:
        """``{label: {metric: [seed, epoch]}}`` for :func:`plotting.plot_bands`."""
        return {self.label(config): self.select(config) for config in self.configs()}

    def save(self, directory: str | os.PathLike) -> None:
        """``histories.npz``, tidy ``histories.csv``, ``summary.csv`` and ``summary.json`` in
        ``directory``, which is created (with its parents) if missing."""
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"cannot save sweep results in {directory}: not a folder") from None
        arrays = {f"history_{metric}": values for metric, values in self.histories.items()}
        arrays["diverged_epoch"] = self.diverged_epoch
        axes_json = json.dumps(to_jsonable(self.axes))
        write_atomically(
            directory / "histories.npz",
            lambda f: np.savez(f, axes=np.frombuffer(axes_json.encode(), np.uint8), **arrays),
        )
        write_atomically(directory / "histories.csv", self._write_tidy_csv)
        summary = self.summary()
        write_json(directory / "summary.json", {"meta": self.meta, "summary": summary})
        write_atomically(directory / "summary.csv", lambda f: _write_rows(f, summary), text=True)

    def _write_tidy_csv(self, f) -> None:
        import io

        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow([*self.names, "epoch", *METRICS, "diverged"])
        epochs = self.histories["loss"].shape[-1]
        for index in np.ndindex(*self.shape):
            values = [_short(self.axes[i][1][j]) for i, j in enumerate(index)]
            diverged = int(self.diverged_epoch[index] >= 0)
            for epoch in range(epochs):
                metrics = [self.histories[m][(*index, epoch)] for m in METRICS]
                if np.isnan(metrics).all():
                    continue
                writer.writerow([*values, epoch + 1, *(f"{m:.6g}" for m in metrics), diverged])
        f.write(text.getvalue().encode())

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SweepResult:
        directory = Path(directory)
        with np.load(directory / "histories.npz", allow_pickle=False) as npz:
            # JSON turns tuples (hidden widths) into lists; the sweep ran with tuples.
            axes = [
                (name, [tuple(v) if isinstance(v, list) else v for v in values])
                for name, values in json.loads(npz["axes"].tobytes().decode())
            ]
            histories = {m: npz[f"history_{m}"] for m in METRICS}
            diverged = npz["diverged_epoch"]
        meta = json.loads((directory / "summary.json").read_text())["meta"]
        return cls(axes, histories, diverged, [], meta)


def _short(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return "-".join(map(str, value))
    return value


def _write_rows(f, rows: list[dict[str, Any]]) -> None:
    names = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(f, fieldnames=names)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _short(v) for k, v in row.items()})


# The statistics SweepResult.summary() reports per config (each as _mean, _std, _min, _max).
SUMMARY_COLUMNS = (
    "peak_val_accuracy",
    "epoch_peak_val_accuracy",
    "min_val_loss",
    "epoch_min_val_loss",
    "final_val_loss",
    "final_val_accuracy",
    "final_accuracy",
)


def summary_table(result: SweepResult, columns: Sequence[str] | None = None) -> str:
    """A Markdown table of :meth:`SweepResult.summary`: mean ± std over seeds per config.

    ``columns`` are names of :data:`SUMMARY_COLUMNS` (a config whose seeds all diverged shows
    "diverged"); an unknown name is a :class:`ConfigError`.
    """
    columns = (columns,) if isinstance(columns, str) else columns
    columns = columns or (
        "peak_val_accuracy",
        "epoch_peak_val_accuracy",
        "min_val_loss",
        "epoch_min_val_loss",
        "final_val_loss",
        "final_accuracy",
    )
    rows = result.summary()
    known = list(SUMMARY_COLUMNS)
    for row in rows:  # and any statistic summary() adds that is not listed there yet
        known += [key[: -len("_mean")] for key in row if key.endswith("_mean")]
    known = list(dict.fromkeys(known))
    unknown = [column for column in columns if column not in known]
    if unknown:
        raise ConfigError(
            f"unknown summary column {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    names = result.names[:-1]
    header = [*names, "seeds", *(c.replace("_", " ") for c in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        ok = row["seeds_run"] - row["diverged"]
        seeds = f"{ok}/{row['seeds']}" if ok != row["seeds"] else str(ok)
        cells = [str(_short(row[name])) for name in names] + [seeds]
        for column in columns:
            if f"{column}_mean" not in row:
                cells.append("diverged" if row["diverged"] else "not run")
                continue
            digits = 1 if column.startswith("epoch") else 4
            cells.append(f"{row[f'{column}_mean']:.{digits}f} ± {row[f'{column}_std']:.{digits}f}")
        lines.append("| " + " | ".join(cells) + " |")
    if not result.meta.get("complete", True):
        progress = result.progress()
        lines.append(
            f"\n(incomplete: {progress['groups_done']} of {progress['groups']} compiled groups "
            'done; "not run" and missing seeds were never trained)'
        )
    return "\n".join(lines)
