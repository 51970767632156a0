"""Many processes, one sweep: JAX's multi-controller runtime (``jax.distributed``).

Every process runs the same script on its own data copy; the models axis of a sweep spans every
process's devices on one global mesh. Every process returns the same results (histories are
gathered), and only process 0 writes files and shows progress bars.

Processes find each other from explicit options (``--coordinator HOST:PORT --num-processes N
--process-id I``), from the environment :mod:`jaxlab.launch` sets (``JAXLAB_COORDINATOR``,
``JAXLAB_NUM_PROCESSES``, ``JAXLAB_PROCESS_ID``), or by JAX's auto-detection (SLURM, Open MPI,
TPU pods: ``--distributed``).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from jaxlab.errors import ConfigError

ENVIRONMENT = ("JAXLAB_COORDINATOR", "JAXLAB_NUM_PROCESSES", "JAXLAB_PROCESS_ID")


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto: bool = False,
) -> bool:
    """Starts ``jax.distributed`` from the arguments, else the launcher's environment, else
    (``auto``) JAX's cluster auto-detection. Returns whether it started; call it before any
    other JAX call."""
    import jax

    given = (coordinator, num_processes, process_id)
    if all(value is None for value in given):
        env = [os.environ.get(name) for name in ENVIRONMENT]
        if all(value is not None for value in env):
            given = (env[0], int(env[1]), int(env[2]))
    if any(value is None for value in given):
        if any(value is not None for value in given):
            raise ConfigError(
                "--coordinator, --num-processes and --process-id go together; got "
                f"{dict(zip(('coordinator', 'num_processes', 'process_id'), given, strict=True))}"
            )
        if not auto:
            return False
        jax.distributed.initialize()
        return True
    coordinator, num_processes, process_id = given
    if not 0 <= process_id < num_processes:
        raise ConfigError(f"--process-id must be in [0, {num_processes}), got {process_id}")
    jax.distributed.initialize(coordinator, num_processes, process_id)
    return True


def process_count() -> int:
    import jax

    return jax.process_count()


def is_main() -> bool:
    """Whether this is the process that writes results (process 0)."""
    import jax

    return jax.process_index() == 0


def to_host(value: Any) -> np.ndarray:
    """A (possibly multi-process, sharded) array as one numpy array, the same in every
    process."""
    import jax

    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(value, tiled=True))
    return np.asarray(value)


def put(tree: Any, sharding) -> Any:
    """``jax.device_put(tree, sharding)``, also onto a sharding that spans other processes'
    devices (every process passes the same values)."""
    import jax

    if process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return jax.device_put(leaf, sharding)
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = one(np.asarray(jax.random.key_data(leaf)))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return jax.device_put(np.asarray(leaf), sharding)

    return jax.tree.map(one, tree)


def any_process(*flags: bool) -> tuple[bool, ...]:
    """Per flag, whether it is set in any process (every process gets the same answer)."""
    if process_count() == 1:
        return tuple(bool(flag) for flag in flags)
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(np.asarray(flags, np.int32))
    return tuple(bool(flag) for flag in np.any(np.asarray(gathered), axis=0))


def broadcast_text(text: str) -> str:
    """Process 0's ``text`` in every process (e.g. the name of a new run folder)."""
    if process_count() == 1:
        return text
    from jax.experimental import multihost_utils

    data = np.zeros(4096, np.uint8)
    encoded = text.encode()[: data.size]
    data[: len(encoded)] = np.frombuffer(encoded, np.uint8)
    data = np.asarray(multihost_utils.broadcast_one_to_all(data))
    return bytes(data).rstrip(b"\0").decode()
