"""Many models in one compiled program: seeds x initializers x hyperparameters with ``vmap``.

A sweep is a base :class:`TrainConfig`, a grid ``{name: values}`` and a list of seeds. A grid
axis is a training field, an optimizer hyperparameter or a model hyperparameter (bare, or as
``optimizer.<name>`` / ``model.<name>`` where a name is both). Axes that keep the shapes of the
program train side by side in one ``jax.jit``: ``l2``, ``learning_rate`` and every other
optimizer hyperparameter, the model's float hyperparameters (``dropout``) and its per-model
choices (the lesson network's ``activation`` and ``kernel_init``). The others (``model``,
``loss``, ``optimizer``, ``batch_size``, ``input_layer``, and model hyperparameters such as
``hidden``) split the sweep into compiled groups run one after another through the same code.
The models axis is sharded over all devices; the data is held once.

Seeds: model ``seed`` always takes its initialization from ``seed``. With
``data_order="per_model"`` its data order and dropout come from ``seed`` too, so it equals
``fit(config, ..., seed=seed)``; with ``"shared"`` (cheapest) every model sees the batches of
``data_seed``, so it equals ``fit(config, ..., seed=seed, data_seed=data_seed)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlab import batching, engine, registry
from jaxlab.engine import Program
from jaxlab.errors import ConfigError
from jaxlab.grid import Group, hyperparameters_of, name_of, normalize_grid, plan_groups
from jaxlab.layers import choose_input_layer
from jaxlab.losses import LOSSES
from jaxlab.models import MODELS
from jaxlab.sweep_results import METRICS, SweepResult
from jaxlab.train import TrainConfig, epoch_keys, run_keys

DATA_ORDERS = ("shared", "per_model")


def _program(group: Group, data, validation, models_per_device: int) -> Program:
    config = group.config
    kinds = group.kinds.values()
    form = MODELS.get(config.model).inputs
    layer = "dense"
    if form == "bag":
        from jaxlab.native import bag

        backend = jax.default_backend()
        auto = config.input_layer == "auto" and backend == "cpu" and bag.available()
        layer = choose_input_layer(config.input_layer, models_per_device, backend, auto)
        if layer == "ffi":
            bag.require()
    gathers = form == "bag" and layer != "ffi"
    batch = min(config.batch_size, data.num_rows)
    eval_batch = min(config.eval_batch_size, validation.num_rows)
    fused = False
    if layer == "ffi" and config.fused_update and data.shift is None:
        from jaxlab.native import fused as fused_update

        fused = fused_update.rule_for(config.optimizer) is not None
    return Program(
        config,
        floats=tuple(field for kind, field in kinds if kind == "model_float"),
        choices=tuple(
            (field, tuple(group.vmapped[name_of(group, kind, field)]))
            for kind, field in kinds
            if kind == "model_choice"
        ),
        input_layer=layer,
        num_train=data.num_rows,
        num_eval=validation.num_rows,
        train_room=batching.nonzeros_capacity(batching.row_lengths(data), batch) if gathers else 0,
        eval_room=(
            batching.max_nonzeros_ordered(batching.row_lengths(validation), eval_batch)
            if gathers
            else 0
        ),
        fused=fused,
        registries=registry.generation(),
    )


def _init_keys(seeds: np.ndarray) -> jax.Array:
    return jax.vmap(lambda s: jax.random.split(jax.random.key(s), 3)[0])(jnp.asarray(seeds))


def _stream_keys(seeds: np.ndarray, epoch: int) -> tuple[jax.Array, jax.Array]:
    """Shuffle and dropout keys of an epoch as :func:`train.epoch_keys` makes them: one pair
    for a scalar seed (shared data order), one per model for an array of seeds."""

    def one(seed):
        return epoch_keys(run_keys(seed), epoch)

    return one(int(seeds)) if np.ndim(seeds) == 0 else jax.vmap(one)(jnp.asarray(seeds))


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


def _check_memory(program: Program, per_device: int, data, hyper_one, count: int) -> None:
    needed = engine.estimate_bytes(program, per_device, data, hyper_one)
    available = available_memory(jax.local_devices()[0])
    if available is not None and needed > 0.8 * available:
        raise ConfigError(
            f"a group of {count} models needs about {needed / 2**30:.1f} GiB per device but "
            f"only {available / 2**30:.1f} GiB is available; use fewer seeds or grid values, "
            "more devices, or split the sweep"
        )


def _checked_seeds(seeds: Sequence[int]) -> list[int]:
    if isinstance(seeds, int | str) or not isinstance(seeds, Sequence | range | np.ndarray):
        raise ConfigError(f"seeds must be a list of integers, got {seeds!r}")
    if not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"seeds must be integers, got {list(seeds)}")
    seeds = [int(s) for s in seeds]
    if len(seeds) == 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a non-empty list without repeats, got {seeds}")
    return seeds


def _device_data(config: TrainConfig, split: tuple[Any, Any], sharding) -> Any:
    form = MODELS.get(config.model).inputs
    loss = LOSSES.get(config.loss)
    if loss.check_labels is not None:
        loss.check_labels(np.asarray(split[1]))
    data = batching.to_device_data(split[0], split[1], form, loss.label_dtype)
    return jax.device_put(data, sharding)


def run_sweep(
    base: TrainConfig,
    grid: Mapping[str, Sequence],
    seeds: Sequence[int],
    train: tuple[Any, Any],
    validation: tuple[Any, Any],
    *,
    data_order: str = "shared",
    data_seed: int = 0,
    check_memory: bool = True,
    keep_params: bool = False,
    verbose: bool = True,
    on_epoch_end: Callable[[SweepResult], None] | None = None,
    label: str | None = None,
) -> SweepResult:
    """Trains every model of ``grid x seeds``; returns their histories with named axes.

    Args:
      base: the configuration each model starts from.
      grid: ``{name: values}``; see the module docstring for what can be swept.
      seeds: each model's seed sets its initialization (and, with ``data_order="per_model"``,
        its data order and dropout).
      train, validation: ``(inputs, labels)`` in the model's input form.
      data_order: ``"shared"``: every model sees the same batches, shuffled from
        ``data_seed`` (cheapest); ``"per_model"``: fully independent replicates, each equal to
        ``fit`` with its seed.
      check_memory: refuse a sweep whose estimated memory exceeds what a device has.
      keep_params: keep every model's final parameters (``SweepResult.params_of``).
      on_epoch_end: called with the partial result after every epoch (e.g. to save it); its
        ``state`` is the running group's :class:`~jaxlab.TrainState`, models first.
      label: the progress bar's text (default: the group and its model count).
    """
    from tqdm.auto import tqdm

    if data_order not in DATA_ORDERS:
        raise ConfigError(f"data_order must be one of {DATA_ORDERS}, got {data_order!r}")
    seeds = _checked_seeds(seeds)
    groups = plan_groups(base, grid)
    grid = normalize_grid(grid)
    per_model = data_order == "per_model"
    mesh = Mesh(np.asarray(jax.devices()), ("models",))
    replicated = NamedSharding(mesh, PartitionSpec())
    by_model = NamedSharding(mesh, PartitionSpec("models"))
    datasets: dict[tuple, tuple] = {}
    result = SweepResult.empty(base, grid, seeds, data_order, data_seed)
    for number, group in enumerate(groups):
        config = group.config
        key = (MODELS.get(config.model).inputs, config.loss)
        if key not in datasets:
            datasets[key] = tuple(_device_data(config, s, replicated) for s in (train, validation))
        train_data, val_data = datasets[key]
        model_seeds, hyper = hyperparameters_of(group, seeds)
        count = len(model_seeds)
        padded = math.ceil(count / mesh.size) * mesh.size
        take = np.r_[np.arange(count), np.zeros(padded - count, int)]  # pad with model 0
        program = _program(group, train_data, val_data, padded // mesh.size)
        if check_memory:
            one = {k: v[:1] for k, v in hyper.items()}
            _check_memory(program, padded // mesh.size, train_data, one, count)
        hyper = {k: jax.device_put(v[take], by_model) for k, v in hyper.items()}
        init_keys = jax.device_put(_init_keys(model_seeds[take]), by_model)
        state = jax.device_put(
            engine.compiled_init(program, hyper, init_keys, train_data), by_model
        )
        stream_seeds = model_seeds[take] if per_model else np.asarray(data_seed)
        desc = label or f"group {number + 1}/{len(groups)} ({count} models)"
        bar = tqdm(range(config.epochs), desc=desc, unit="epoch", disable=not verbose)
        for epoch in bar:
            start = time.perf_counter()
            shuffle_keys, dropout_keys = _stream_keys(stream_seeds, epoch)
            if program.gathers:  # a rare shuffle needs more room: make it, never truncate
                needed = int(engine.compiled_room(program, per_model, train_data, shuffle_keys))
                if needed > program.train_room:
                    program = program.with_room_for(needed)
            state, train_sums = engine.run_epoch(
                program, per_model, state, hyper, train_data, shuffle_keys, dropout_keys
            )
            val_sums = engine.compiled_evaluate(program, state, hyper, val_data)
            sums = (train_sums, val_sums)
            values = [
                np.asarray(s[name] / s["count"])[:count]
                for s in sums
                for name in ("loss", "correct")
            ]
            result.record(
                group.fixed, group.vmapped, epoch, dict(zip(METRICS, values, strict=True))
            )
            result.seconds.append(time.perf_counter() - start)
            result.timings.append(
                {
                    **group.fixed,
                    "epoch": epoch + 1,
                    "models": count,
                    "input_layer": program.input_layer,
                    "seconds": result.seconds[-1],
                }
            )
            bar.set_postfix(_postfix(result, values, count))
            result.state = state
            if on_epoch_end is not None:
                on_epoch_end(result)
        if keep_params:
            params = jax.tree.map(lambda leaf, n=count: np.asarray(leaf)[:n], state.params)
            result.final_params.append((group.fixed, group.vmapped, params))
    return result


def _postfix(result: SweepResult, values: list[np.ndarray], count: int) -> dict[str, Any]:
    if count == 1:
        return {name: f"{float(v[0]):.4f}" for name, v in zip(METRICS, values, strict=True)}
    return {"diverged": int(result.diverged_count())}


def step_memory_bytes(config: TrainConfig, train: tuple[Any, Any]) -> int:
    """The working memory XLA plans for one train step of one model of ``config`` on this
    data, from the compiled step (never run): temporaries only, not the dataset, parameters or
    optimizer state passed in."""
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("models",))
    data = _device_data(config, train, NamedSharding(mesh, PartitionSpec()))
    group = plan_groups(config, {})[0]
    _, hyper = hyperparameters_of(group, [0])
    program = _program(group, data, data, 1)
    keys = _init_keys(np.zeros(1, int))
    models = jax.eval_shape(lambda h, k: engine.init_models(program, h, k, data), hyper, keys)
    state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), models)

    def step(state, hyper, rows_B, key):
        batch = program.batch(data, rows_B, program.train_room)
        return program.train_step(hyper)(state, batch, key)

    rows = jax.ShapeDtypeStruct((program.batch_size,), jnp.int32)
    one = {name: values[0] for name, values in hyper.items()}
    lowered = jax.jit(step).lower(state, one, rows, jax.random.key(0))
    return int(lowered.compile().memory_analysis().temp_size_in_bytes)
