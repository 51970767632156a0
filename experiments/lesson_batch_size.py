"""1-1 Batch size: full batch (all 25,000 reviews per step) vs mini-batches of 512, 128 and 32,
5 seeds each: validation loss against epochs, against updates and against wall-clock time, and
the memory one training step needs.

The lesson: mini-batch gradient descent updates the weights after each small batch; it needs far
less memory per step than the full batch and reaches a given validation loss in fewer epochs.

    python experiments/lesson_batch_size.py
    python experiments/lesson_batch_size.py --quick
"""

from __future__ import annotations

import argparse

import numpy as np

from jaxlab import distributed, lesson, plotting, verdicts
from jaxlab.sweep import step_memory_bytes
from jaxlab.sweep_results import SweepResult
from jaxlab.train import TrainConfig

FULL = 25000  # the whole training split: one step per epoch
BATCH_SIZES = [FULL, 512, 128, 32]
FAR_LESS = 0.1  # "far less memory": at most a tenth of the full batch's
TECHNIQUE = "1-1 batch size"


def build_parser() -> argparse.ArgumentParser:
    return lesson.parser(__doc__.split("\n\n")[0])


def step_memory(train) -> dict[str, dict[int, int]]:
    """Bytes of working memory per training step, by first layer and batch size."""
    return {
        layer: {
            size: step_memory_bytes(TrainConfig(input_layer=layer, batch_size=size), train)
            for size in BATCH_SIZES
        }
        for layer in ("dense", "sparse")
    }


def steps_per_epoch(size: int, num_train: int) -> int:
    return -(-num_train // min(size, num_train))


def epoch_seconds(result: SweepResult, size: int) -> np.ndarray:
    """Wall-clock seconds of each epoch of this batch size's group (all its seeds at once),
    the first epoch's compilation replaced by the median epoch."""
    seconds = np.array([t["seconds"] for t in result.timings if t["batch_size"] == size], float)
    if len(seconds) > 1:
        seconds[0] = np.median(seconds[1:])
    return seconds


def first_epoch_at(val_loss: np.ndarray, target: float) -> np.ndarray:
    """Per seed, the first epoch (1-based) with val_loss <= target; inf if never."""
    reached = val_loss <= target
    return np.where(reached.any(axis=1), reached.argmax(axis=1) + 1.0, np.inf)


def epochs_to_reach(val_loss: np.ndarray, target: float) -> float:
    """Mean over seeds of the first epoch (1-based) with val_loss <= target (inf: never)."""
    return float(np.mean(first_epoch_at(val_loss, target)))


def judge(result: SweepResult, memory: dict, num_train: int) -> list[lesson.Claim]:
    full = min(BATCH_SIZES[0], num_train)
    sizes = [s for s in BATCH_SIZES if s < full]
    # The loss every full-batch seed got to: the worst seed's minimum.
    target = result.summary()[0]["min_val_loss_max"]
    budget = result.histories["val_loss"].shape[-1] + 1.0
    epochs = {
        s: epochs_to_reach(result.select({"batch_size": s})["val_loss"], target)
        for s in BATCH_SIZES
    }
    updates = {s: epochs[s] * steps_per_epoch(s, num_train) for s in BATCH_SIZES}
    seconds = {}
    for s in BATCH_SIZES:
        per_epoch = epoch_seconds(result, s)
        reached = epochs[s]
        seconds[s] = (
            float(per_epoch[: int(np.ceil(reached))].sum())
            if np.isfinite(reached)
            else float("inf")
        )

    def mib(n):
        return f"{n / 2**20:,.1f} MiB"

    memory_text = "; ".join(
        f"{layer} first layer: " + ", ".join(f"{s}: {mib(b)}" for s, b in by_size.items())
        for layer, by_size in memory.items()
    )
    memory_test = verdicts.deterministic(
        "largest step memory of a mini-batch / the full batch's (either first layer)",
        max(
            (by_size[s] / by_size[BATCH_SIZES[0]] for by_size in memory.values() for s in sizes),
            default=float("nan"),
        ),
        "<",
        FAR_LESS,
        "'far less': at most a tenth of the full batch's memory",
    )
    # Per seed: the slowest mini-batch size's epochs minus the full batch's. A seed that never
    # gets there counts as one epoch past the budget (a lower bound on what it needs).
    per_seed = {
        s: np.minimum(first_epoch_at(result.select({"batch_size": s})["val_loss"], target), budget)
        for s in BATCH_SIZES
    }
    slowest = np.max([per_seed[s] for s in sizes], axis=0) if sizes else np.full(1, np.nan)
    epochs_test = verdicts.paired(
        "epochs to the target val_loss, slowest mini-batch size minus full batch",
        slowest,
        per_seed[BATCH_SIZES[0]],
        "<",
        -0.5,
        "epochs are whole: at least one epoch fewer, seed by seed",
    )
    return [
        lesson.claim(
            TECHNIQUE,
            "Mini-batches need far less memory per step than the full batch.",
            f"working memory of one training step by batch size: {memory_text}",
            memory_test,
            why="This is the working memory XLA plans for one compiled step (temporaries "
            "only, not the dataset, parameters or optimizer state).",
        ),
        lesson.claim(
            TECHNIQUE,
            "Mini-batches reach a given validation loss in fewer epochs.",
            f"epochs to val_loss <= {target:.3f} (reached by every full-batch seed): "
            + ", ".join(f"{s}: {epochs[s]:.1f}" for s in BATCH_SIZES)
            + "; updates: "
            + ", ".join(f"{s}: {updates[s]:.0f}" for s in BATCH_SIZES)
            + "; wall-clock (all seeds at once): "
            + ", ".join(f"{s}: {seconds[s]:.1f} s" for s in BATCH_SIZES),
            epochs_test,
            why=f"The full batch takes one step per epoch and mini-batches of 512 take "
            f"{steps_per_epoch(512, num_train)}; in updates the mini-batches needed "
            + ", ".join(f"{s}: {updates[s]:.0f}" for s in sizes)
            + f" against the full batch's {updates[BATCH_SIZES[0]]:.0f}.",
        ),
    ]


def plot(result: SweepResult, num_train: int, path) -> None:
    curves = {}
    for size in BATCH_SIZES:
        val_loss = result.select({"batch_size": size})["val_loss"]
        epochs = np.arange(1, val_loss.shape[1] + 1)
        curves[f"batch {size}"] = {
            "val_loss": val_loss,
            "epochs": epochs,
            "updates": epochs * steps_per_epoch(size, num_train),
            "seconds (compilation excluded)": np.cumsum(epoch_seconds(result, size)),
        }
    plotting.plot_against(curves, path, title="1-1 batch size: validation loss", log_x=["updates"])


def run(args: argparse.Namespace) -> None:
    this = lesson.Run.from_args("lesson_batch_size", args)
    train, _ = this.data(args)
    memory = step_memory(train)
    this.write_info(step_memory_bytes=memory)
    result = this.sweep(args, TrainConfig(), {"batch_size": BATCH_SIZES}, "batch_size")
    num_train = len(train[1])
    if distributed.is_main():
        plot(result, num_train, this.directory / "val_loss-against.png")
    this.finish({"batch_size": result}, judge(result, memory, num_train), "1-1 batch size")


if __name__ == "__main__":
    lesson.main(build_parser, run)
