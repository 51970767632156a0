"""Many models in one compiled program: seeds x initializers x hyperparameters with ``vmap``.

A sweep is a base :class:`TrainConfig`, a grid ``{field: values}`` and a list of seeds. Fields
that keep the shapes of the program (``kernel_init``, ``activation``, ``l2``, ``dropout``,
``learning_rate`` and the optimizer's other numeric hyperparameters) are vmapped: all their
models train together in one ``jax.jit``. Fields that change it (``hidden``, ``batch_size``,
``optimizer``, ``input_layer``) split the sweep into compiled groups run one after another
through the same code. The models axis is sharded over all devices; the data is held once.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlab import batching
from jaxlab.errors import ConfigError
from jaxlab.models import init_params
from jaxlab.optim import OPTIMIZERS, optimizer_defaults
from jaxlab.sweep_results import SweepResult
from jaxlab.train import (
    METRICS,
    ModelSettings,
    TrainConfig,
    Trainer,
    TrainState,
    epoch_keys,
    make_trainer,
    run_keys,
    scan_eval,
    scan_steps,
)

MODEL_FIELDS = ("hidden", "input_layer")  # change the compiled program
TRAIN_FIELDS = ("batch_size", "optimizer")
SETTINGS_FIELDS = ("kernel_init", "activation", "l2", "dropout")  # vmapped, like hyperparameters
DATA_ORDERS = ("shared", "per_model")


@dataclasses.dataclass(frozen=True)
class Models:
    """Per-model inputs of one compiled group (leading axis: models)."""

    seeds: np.ndarray  # M int
    init_index: np.ndarray  # M int, into the group's initializer names
    hyperparameters: dict[str, np.ndarray]  # name -> M float32
    l2: np.ndarray
    dropout: np.ndarray
    activation_index: np.ndarray  # M int, into the group's activation names


def _static_fields(grid: Mapping[str, Sequence]) -> list[str]:
    return [name for name in grid if name in MODEL_FIELDS + TRAIN_FIELDS]


def _group_config(base: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    model_changes = {k: v for k, v in values.items() if k in MODEL_FIELDS}
    train_changes = {k: v for k, v in values.items() if k in TRAIN_FIELDS}
    if "hidden" in model_changes:
        model_changes["hidden"] = tuple(model_changes["hidden"])
    model = dataclasses.replace(base.model, **model_changes)
    return dataclasses.replace(base, model=model, **train_changes)


def normalize_grid(grid: Mapping[str, Any]) -> dict[str, list]:
    """The grid with every axis a list of plain Python values (numpy arrays accepted);
    ``hidden`` values as tuples of widths."""
    out = {}
    for name, values in grid.items():
        if isinstance(values, np.ndarray):
            values = values.tolist()
        if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
            raise ConfigError(f"grid axis {name!r} needs a non-empty list of values")
        values = [v.item() if isinstance(v, np.generic) else v for v in values]
        if name == "hidden":
            if not all(isinstance(v, Sequence) and not isinstance(v, str) for v in values):
                raise ConfigError(
                    f"hidden values are tuples of layer widths like (16, 16), got {values}"
                )
            values = [tuple(v) for v in values]
        if any(v is None for v in values):
            raise ConfigError(
                f"grid axis {name!r} has None; leave the axis out to use the default value"
            )
        out[name] = values
    return out


def check_grid(base: TrainConfig, grid: Mapping[str, Sequence], seeds: Sequence[int]) -> None:
    """Every axis known, non-empty and valid; raises ConfigError otherwise."""
    if len(seeds) == 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a non-empty list without repeats, got {list(seeds)}")
    grid = normalize_grid(grid)
    if "seed" in grid:
        raise ConfigError("seeds are given separately, not as a grid axis")
    static = {name: grid[name] for name in _static_fields(grid)}
    for values in itertools.product(*static.values()):
        group = _group_config(base, dict(zip(static, values, strict=True)))
        allowed = set(optimizer_defaults(group.optimizer)) | set(SETTINGS_FIELDS)
        for name, axis in grid.items():
            if name in static:
                continue
            if name not in allowed:
                raise ConfigError(
                    f"unknown grid axis {name!r} for optimizer {group.optimizer!r}; sweepable: "
                    f"{', '.join(sorted(allowed | set(MODEL_FIELDS + TRAIN_FIELDS)))}"
                )
            for value in axis:  # validate each value through the configs' own checks
                if name in ("kernel_init", "activation"):
                    dataclasses.replace(group.model, **{name: value})
                elif name in ("l2", "dropout"):
                    dataclasses.replace(group, **{name: value})
                elif name == "learning_rate":
                    dataclasses.replace(group, learning_rate=value)
                else:
                    args = dict(group.optimizer_args) | {name: value}
                    dataclasses.replace(group, optimizer_args=args)


def _models(group: TrainConfig, axes: Mapping[str, Sequence], seeds: Sequence[int]) -> Models:
    """The group's models: the product of its vmapped axes, seeds varying fastest."""
    combos = list(itertools.product(*axes.values(), seeds))
    columns = {name: [combo[i] for combo in combos] for i, name in enumerate(axes)}
    inits = list(axes.get("kernel_init", [group.model.kernel_init]))
    activations = list(axes.get("activation", [group.model.activation]))
    defaults = group.hyperparameters()
    count = len(combos)

    def column(name: str, default: float) -> np.ndarray:
        return np.asarray(columns.get(name, [default] * count), np.float32)

    return Models(
        seeds=np.asarray([combo[-1] for combo in combos]),
        init_index=np.asarray(
            [inits.index(v) for v in columns.get("kernel_init", [inits[0]] * count)]
        ),
        hyperparameters={name: column(name, value) for name, value in defaults.items()},
        l2=column("l2", group.l2),
        dropout=column("dropout", group.dropout),
        activation_index=np.asarray(
            [activations.index(v) for v in columns.get("activation", [activations[0]] * count)]
        ),
    )


def _init_one(
    group: TrainConfig, init_names: tuple[str, ...], key, init_index, hyperparameters
) -> TrainState:
    branches = [
        lambda k, name=name: init_params(dataclasses.replace(group.model, kernel_init=name), k)
        for name in init_names
    ]
    params = jax.lax.switch(init_index, branches, key)
    optimizer = optax.inject_hyperparams(OPTIMIZERS.get(group.optimizer))(**hyperparameters)
    return TrainState(params, optimizer.init(params))


def _init_keys(seeds: np.ndarray) -> jax.Array:
    return jax.vmap(lambda s: jax.random.split(jax.random.key(s), 3)[0])(jnp.asarray(seeds))


def _stream_keys(seeds: np.ndarray, epoch: int) -> tuple[jax.Array, jax.Array]:
    """Shuffle and dropout keys of an epoch as :func:`train.epoch_keys` makes them: one pair
    for a scalar seed (shared data order), one per model for an array of seeds."""

    def one(seed):
        return epoch_keys(run_keys(seed), epoch)

    return one(int(seeds)) if np.ndim(seeds) == 0 else jax.vmap(one)(jnp.asarray(seeds))


# Compiled once per (trainer, data order); both are static and hashable. The scan over batches
# runs outside the vmap over models: one step trains every model, so their first layers share
# one kernel call per step.
def _epoch(trainer: Trainer, per_model: bool, state, data, shuffle_keys, dropout_keys, reg):
    axis = 0 if per_model else None
    step = jax.vmap(trainer.indexed_step, in_axes=(0, None, axis, axis, 0, None))
    if per_model:  # each model's own shuffle: (M, S, B) -> (S, M, B)
        batches = jnp.moveaxis(jax.vmap(trainer.epoch_batches)(shuffle_keys), 0, 1)
    else:
        batches = trainer.epoch_batches(shuffle_keys)
    return scan_steps(step, state, data, batches, dropout_keys, reg)


def _evaluate(trainer: Trainer, state, data, reg):
    step = jax.vmap(trainer.eval_step, in_axes=(0, None, None, 0))
    return scan_eval(step, state.params, data, trainer.eval_batches(), reg)


def _needed(trainer: Trainer, per_model: bool, data, shuffle_keys):
    if not per_model:
        return trainer.nonzeros_needed(data, shuffle_keys)
    return jnp.max(jax.vmap(trainer.nonzeros_needed, in_axes=(None, 0))(data, shuffle_keys))


sweep_epoch = jax.jit(_epoch, static_argnums=(0, 1), donate_argnums=2)
sweep_evaluate = jax.jit(_evaluate, static_argnums=0)
sweep_needed = jax.jit(_needed, static_argnums=(0, 1))


def available_memory(device: jax.Device) -> int | None:
    """Bytes one device can hold: the accelerator's limit, or the host's available memory."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def estimate_bytes(trainer: Trainer, models_per_device: int, data_bytes: int) -> int:
    """A generous estimate of one device's peak memory for a group, before compiling.

    Checked against experiments/benchmark.py on CPU: 256 models of the lesson's network peaked
    at 5.9 and 1.2 GiB (sparse and dense first layer); this estimates 11.4 and 1.5 GiB.
    """
    shapes = jax.eval_shape(trainer.init, jax.random.key(0))
    state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))
    params = jax.tree.leaves(shapes.params)
    param_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in params)
    width = max(trainer.config.model.hidden)
    rows_at_once = max(trainer.batch_size, trainer.config.eval_batch_size)
    activations = 8 * rows_at_once * width * 4
    shared = data_bytes
    if trainer.config.model.input_layer == "dense":
        # The dense batch depends on the data alone, so vmap builds it once for all models.
        shared += 2 * rows_at_once * trainer.config.model.num_words * 4
    else:  # each model gathers its kernel rows for every nonzero (with a margin)
        activations += 2 * max(trainer.train_nonzeros, trainer.eval_nonzeros) * width * 4
    per_model = 2 * state_bytes + 2 * param_bytes + activations
    return models_per_device * per_model + shared


def _mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("models",))


def run_sweep(
    base: TrainConfig,
    grid: Mapping[str, Sequence],
    seeds: Sequence[int],
    train: tuple[Any, np.ndarray],
    validation: tuple[Any, np.ndarray],
    *,
    data_order: str = "shared",
    data_seed: int = 0,
    check_memory: bool = True,
    keep_params: bool = False,
    verbose: bool = True,
    on_epoch_end: Callable[[SweepResult], None] | None = None,
) -> SweepResult:
    """Trains every model of ``grid x seeds``; returns their histories with named axes.

    Args:
      base: the configuration each model starts from.
      grid: ``{field: values}``; see the module docstring for what can be swept.
      seeds: each model's seed sets its initialization (and, with ``data_order="per_model"``,
        its data order and dropout).
      data_order: ``"shared"``: every model sees the same batches, shuffled from
        ``data_seed`` (cheapest); ``"per_model"``: fully independent replicates.
      check_memory: refuse a sweep whose estimated memory exceeds what a device has.
      keep_params: keep every model's final parameters (``SweepResult.params_of``).
      on_epoch_end: called with the partial result after every epoch (e.g. to save it).
    """
    from tqdm.auto import tqdm

    if data_order not in DATA_ORDERS:
        raise ConfigError(f"data_order must be one of {DATA_ORDERS}, got {data_order!r}")
    seeds = [int(s) for s in seeds]
    grid = normalize_grid(grid)
    check_grid(base, grid, seeds)
    per_model = data_order == "per_model"
    mesh = _mesh()
    replicated = NamedSharding(mesh, PartitionSpec())
    by_model = NamedSharding(mesh, PartitionSpec("models"))
    train_data = jax.device_put(batching.to_device_data(*train), replicated)
    val_data = jax.device_put(batching.to_device_data(*validation), replicated)
    data_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves((train_data, val_data)))

    static = {name: list(grid[name]) for name in _static_fields(grid)}
    vmapped = {name: list(values) for name, values in grid.items() if name not in static}
    result = SweepResult.empty(base, grid, seeds, data_order, data_seed)
    groups = list(itertools.product(*static.values()))
    for group_number, static_values in enumerate(groups):
        group_fixed = dict(zip(static, static_values, strict=True))
        group = _group_config(base, group_fixed)
        if "activation" in vmapped:  # one program, each model picks its activation by index
            model = dataclasses.replace(group.model, activation=tuple(vmapped["activation"]))
            group = dataclasses.replace(group, model=model)
        models = _models(group, vmapped, seeds)
        count = len(models.seeds)
        padded = math.ceil(count / mesh.size) * mesh.size
        take = np.r_[np.arange(count), np.zeros(padded - count, int)]  # pad with model 0

        trainer = make_trainer(
            group,
            train_data,
            val_data,
            padded // mesh.size,
            penalized=bool(np.any(models.l2 > 0)),
            drops=bool(np.any(models.dropout > 0)),
        )
        group = trainer.config  # with the first layer chosen
        if check_memory:
            _check_memory(trainer, padded // mesh.size, data_bytes, count)
        init_names = tuple(vmapped.get("kernel_init", [group.model.kernel_init]))
        hyper = {k: jax.device_put(v[take], by_model) for k, v in models.hyperparameters.items()}
        init_keys = jax.device_put(_init_keys(models.seeds[take]), by_model)
        init_index = jax.device_put(models.init_index[take], by_model)
        init_one = functools.partial(_init_one, group, init_names)
        init = jax.jit(jax.vmap(init_one), out_shardings=by_model)
        state = init(init_keys, init_index, hyper)
        settings = ModelSettings(
            models.l2[take], models.dropout[take], models.activation_index[take]
        )
        reg = jax.device_put(settings, by_model)
        stream_seeds = models.seeds[take] if per_model else np.asarray(data_seed)
        label = f"group {group_number + 1}/{len(groups)} ({count} models)"
        bar = tqdm(range(group.epochs), desc=label, unit="epoch", disable=not verbose)
        for epoch in bar:
            start = time.perf_counter()
            shuffle_keys, dropout_keys = _stream_keys(stream_seeds, epoch)
            if trainer.gathers:
                needed = int(sweep_needed(trainer, per_model, train_data, shuffle_keys))
                if needed > trainer.train_nonzeros:
                    trainer = trainer.with_room_for(needed)
            state, train_sums = sweep_epoch(
                trainer, per_model, state, train_data, shuffle_keys, dropout_keys, reg
            )
            val_sums = sweep_evaluate(trainer, state, val_data, reg)
            values = [np.asarray(v)[:count] for v in (*train_sums.means(), *val_sums.means())]
            result.record(group_fixed, vmapped, epoch, dict(zip(METRICS, values, strict=True)))
            result.seconds.append(time.perf_counter() - start)
            result.timings.append(
                {
                    **group_fixed,
                    "epoch": epoch + 1,
                    "models": count,
                    "input_layer": group.model.input_layer,
                    "seconds": result.seconds[-1],
                }
            )
            bar.set_postfix(diverged=int(result.diverged_count()))
            if on_epoch_end is not None:
                on_epoch_end(result)
        if keep_params:
            params = jax.tree.map(lambda leaf, n=count: np.asarray(leaf)[:n], state.params)
            result.final_params.append((group_fixed, vmapped, params))
    return result


def _check_memory(trainer: Trainer, per_device: int, data_bytes: int, count: int) -> None:
    needed = estimate_bytes(trainer, per_device, data_bytes)
    available = available_memory(jax.devices()[0])
    if available is not None and needed > 0.8 * available:
        raise ConfigError(
            f"a group of {count} models needs about {needed / 2**30:.1f} GiB per device but "
            f"only {available / 2**30:.1f} GiB is available; use fewer seeds or grid values, "
            "more devices, or split the sweep"
        )
