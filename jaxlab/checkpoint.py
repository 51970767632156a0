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
import numpy as np

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
        self._buffers = None  # host copies of the state, reused from one save to the next
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
                state=args.PyTreeSave(self._on_host(state)),
                record=args.PyTreeSave(record),
                meta=args.JsonSave({**to_jsonable(meta), "identity": self.identity}),
            ),
        )

    def _on_host(self, state: Any) -> Any:
        """In one process, ``state`` copied into host buffers kept from one save to the next.

        Orbax would copy it into new host memory at every save, and on a CPU those fresh pages
        cost more than the write itself (64 models of the lesson's network, 80 MB: 0.1-0.3 s
        of CPU time per save against 0.08 s). With many processes the state is a global array
        that no process holds whole: Orbax saves each process's shards.
        """
        leaves, treedef = jax.tree.flatten(state)
        if jax.process_count() > 1 or not all(map(_plain_array, leaves)):
            return state
        self.manager.wait_until_finished()  # the buffers are free once the last save is written
        layout = (treedef, [(leaf.shape, np.dtype(leaf.dtype)) for leaf in leaves])
        if self._buffers is None or self._buffers[0] != layout:
            self._buffers = (layout, [np.empty(shape, dtype) for shape, dtype in layout[1]])
        for target, leaf in zip(self._buffers[1], leaves, strict=True):
            _copy_to_host(target, leaf)
        return jax.tree.unflatten(treedef, self._buffers[1])

    def close(self) -> None:
        """Waits for the last checkpoint to be written."""
        self.manager.wait_until_finished()
        self.manager.close()


def _plain_array(leaf: Any) -> bool:
    """Whether ``leaf`` is an array of numbers (not a PRNG key)."""
    dtype = getattr(leaf, "dtype", None)
    return (
        isinstance(leaf, (jax.Array, np.ndarray))
        and dtype is not None
        and not jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)
    )


def _copy_to_host(target: np.ndarray, array: Any) -> None:
    """Copies ``array`` (a jax.Array, whatever its sharding, or numpy) into ``target``."""
    if not isinstance(array, jax.Array):
        np.copyto(target, array)
        return
    for shard in array.addressable_shards:
        if shard.replica_id == 0:
            target[shard.index] = np.asarray(shard.data)


def record_of(result, kept: dict[int, Any]) -> dict[str, Any]:
    """What a checkpoint keeps of a :class:`SweepResult`: histories, divergence, final
    parameters of finished groups (numpy)."""
    # Copies: the sweep goes on writing into its histories while Orbax saves these.
    histories = {metric: values.copy() for metric, values in result.histories.items()}
    record = {"histories": histories, "diverged_epoch": result.diverged_epoch.copy()}
    if kept:
        record["final_params"] = {str(number): params for number, params in kept.items()}
    return record
