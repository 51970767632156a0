"""A sweep's checkpoints with Orbax: everything needed to continue it exactly.

A checkpoint holds the running group's :class:`~jaxlab.TrainState` (every model's parameters
and optimizer state, sharded as trained), the histories recorded so far (all groups), the
kept final parameters of finished groups, and where the sweep stands: the group, the epochs
done in it, and the room planned for its batches. The PRNG keys are not stored: every epoch's
keys are derived from the seeds and the epoch number, so a resumed run draws the same ones.

Checkpoints are written by Orbax's ``CheckpointManager``: asynchronously (training goes on while
they are written), atomically (a checkpoint being written is never read as one), keeping the
last two, and with every process taking part in a multi-process run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jax

from jaxlab.errors import ConfigError
from jaxlab.results import to_jsonable

KEEP = 2
# Without checkpoint_every, a group checkpoints at its end, and after every epoch that took
# at least this long (so a short epoch never waits for a checkpoint).
AUTO_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a checkpointed sweep stands: ``epoch`` epochs of group ``group`` are done."""

    group: int
    epoch: int
    train_room: int
    step: int


def fingerprint(**identity: Any) -> str:
    """A short hash of what defines a sweep, so a checkpoint is never resumed into another."""
    text = json.dumps(to_jsonable(identity), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SweepCheckpoints:
    """The checkpoints of one sweep in ``directory``.

    ``every``: checkpoint after every ``every``-th epoch of a group (None: see
    :data:`AUTO_SECONDS`); a group always checkpoints at its end. ``resume``: continue from
    the latest checkpoint there, if any; without it the folder must hold none.
    """

    def __init__(self, directory: str | os.PathLike, identity: str, every: int | None, resume):
        import orbax.checkpoint as ocp

        if every is not None and (isinstance(every, bool) or not isinstance(every, int)):
            raise ConfigError(f"checkpoint_every must be a positive integer, got {every!r}")
        if every is not None and every < 1:
            raise ConfigError(f"checkpoint_every must be a positive integer, got {every}")
        self.directory = Path(directory).absolute()
        self.identity = identity
        self.every = every
        self._ocp = ocp
        options = ocp.CheckpointManagerOptions(
            max_to_keep=KEEP, enable_async_checkpointing=True, create=True
        )
        # Uncompressed: zstd took about twice the CPU time of the rest of a save (on 2 cores
        # that time comes out of training) and saved under 10% of the bytes of float weights.
        handlers = {
            "state": ocp.PyTreeCheckpointHandler(use_compression=False),
            "record": ocp.PyTreeCheckpointHandler(use_compression=False),
            "meta": ocp.JsonCheckpointHandler(),
        }
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=handlers
        )
        self.position: Position | None = None
        latest = self.manager.latest_step()
        if latest is not None and not resume:
            raise ConfigError(
                f"{self.directory} already holds checkpoints of a run; resume it or choose "
                "an empty folder"
            )
        if latest is not None:
            meta = self._restore(latest, meta=self._ocp.args.JsonRestore())["meta"]
            if meta["identity"] != identity:
                raise ConfigError(
                    f"the checkpoints in {self.directory} are of a different sweep (other "
                    "configuration, grid, seeds, data or device count); resume with the same "
                    "arguments on as many devices"
                )
            self.meta = meta
            self.position = Position(meta["group"], meta["epoch"], meta["train_room"], latest)

    def _restore(self, step: int, **items) -> dict[str, Any]:
        return self.manager.restore(step, args=self._ocp.args.Composite(**items))

    def restore_record(self) -> dict[str, Any]:
        """The histories and kept parameters of the latest checkpoint (numpy)."""
        return self._restore(self.position.step, record=self._ocp.args.PyTreeRestore())["record"]

    def restore_state(self, like: Any) -> Any:
        """The running group's state, shaped and sharded like ``like``."""
        abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, like)
        restore_args = self._ocp.checkpoint_utils.construct_restore_args(abstract)
        item = self._ocp.args.PyTreeRestore(abstract, restore_args=restore_args)
        restored = self._restore(self.position.step, state=item)
        return restored["state"]

    def due(self, done: int, epochs: int, slow: bool) -> bool:
        """Whether the epoch just finished (``done`` of ``epochs``) is checkpointed."""
        if done == epochs:
            return True
        return done % self.every == 0 if self.every is not None else slow

    def save(self, step: int, state: Any, record: dict[str, Any], meta: dict[str, Any]) -> None:
        """Starts writing a checkpoint (returns once the state is copied off the devices)."""
        args = self._ocp.args
        # Orbax holds the state's host values before this returns, so the next epoch may donate
        # its buffers (the resume tests checkpoint every epoch of a donating loop).
        self.manager.save(
            step,
            args=args.Composite(
                state=args.PyTreeSave(state),
                record=args.PyTreeSave(record),
                meta=args.JsonSave({**to_jsonable(meta), "identity": self.identity}),
            ),
        )

    def close(self) -> None:
        """Waits for the last checkpoint to be written."""
        self.manager.wait_until_finished()
        self.manager.close()


def record_of(result, kept: dict[int, Any]) -> dict[str, Any]:
    """What a checkpoint keeps of a :class:`SweepResult`: histories, divergence, final
    parameters of finished groups (numpy)."""
    # Copies: the sweep goes on writing into its histories while Orbax saves these.
    histories = {metric: values.copy() for metric, values in result.histories.items()}
    record = {"histories": histories, "diverged_epoch": result.diverged_epoch.copy()}
    if kept:
        record["final_params"] = {str(number): params for number, params in kept.items()}
    return record
