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

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxlab import batching, checkpoint, distributed, engine, interrupt, memory, registry
from jaxlab.checkpoint import AUTO_SECONDS, record_of
from jaxlab.engine import Program
from jaxlab.errors import ConfigError, Interrupted
from jaxlab.grid import Group, hyperparameters_of, name_of, normalize_grid, plan_groups
from jaxlab.layers import choose_input_layer
from jaxlab.losses import LOSSES
from jaxlab.models import MODELS
from jaxlab.sweep_results import METRICS, SweepResult, majority_rate
from jaxlab.train import TrainConfig, epoch_keys, run_keys

DATA_ORDERS = ("shared", "per_model")


def input_layer_used(config: TrainConfig, models_per_device: int = 1) -> str:
    """The first layer ``config`` trains with here (``"auto"`` resolved; ``"dense"`` for
    models that do not read bags)."""
    if MODELS.get(config.model).inputs != "bag":
        return "dense"
    from jaxlab.native import bag

    backend = jax.default_backend()
    auto = config.input_layer == "auto" and backend == "cpu" and bag.available()
    layer = choose_input_layer(config.input_layer, models_per_device, backend, auto)
    if layer == "ffi":
        bag.require()
    return layer


def _program(group: Group, data, validation, models_per_device: int) -> Program:
    config = group.config
    kinds = group.kinds.values()
    form = MODELS.get(config.model).inputs
    layer = input_layer_used(config, models_per_device)
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


def _stream_keys(seeds: np.ndarray, epoch: int, sharding) -> tuple[jax.Array, jax.Array]:
    """Shuffle and dropout keys of an epoch as :func:`train.epoch_keys` makes them: one pair
    for a scalar seed (shared data order), one per model for an array of seeds."""

    def one(seed):
        return epoch_keys(run_keys(seed), epoch)

    keys = one(int(seeds)) if np.ndim(seeds) == 0 else jax.vmap(one)(jnp.asarray(seeds))
    return distributed.put(keys, sharding)


def _checkpoints(directory, every, resume, base, grid, seeds, data_order, data_seed, keep, *data):
    if directory is None:
        if resume or every is not None:
            raise ConfigError("resume and checkpoint_every need a checkpoint_dir")
        return None
    identity = checkpoint.fingerprint(
        base=base, grid=grid, seeds=seeds, data_order=data_order, data_seed=data_seed,
        keep_params=keep, rows=[len(np.asarray(labels)) for _, labels in data],
        devices=jax.device_count(),  # the models are padded to it: resume on as many
    )  # fmt: skip
    return checkpoint.SweepCheckpoints(directory, identity, every, resume)


def _restore_record(saver, result: SweepResult) -> dict[int, Any]:
    """Fills ``result`` from the latest checkpoint; returns the kept final parameters."""
    record = saver.restore_record()
    for metric in METRICS:
        result.histories[metric][...] = record["histories"][metric]
    result.diverged_epoch[...] = record["diverged_epoch"]
    result.seconds.extend(saver.meta["seconds"])
    result.timings.extend(saver.meta["timings"])
    return {int(n): params for n, params in record.get("final_params", {}).items()}


def _interrupted(signal_name: str, saver) -> Interrupted:
    return Interrupted(
        signal_name,
        f"interrupted by {signal_name}; checkpoint in {saver.directory}, continue with "
        "resume=True (scripts: --resume RUN_DIR)",
    )


SEED_LIMIT = 2**32


def _checked_seeds(seeds: Sequence[int]) -> list[int]:
    if isinstance(seeds, int | str) or not isinstance(seeds, Sequence | range | np.ndarray):
        raise ConfigError(f"seeds must be a list of integers, got {seeds!r}")
    if not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"seeds must be integers, got {list(seeds)}")
    seeds = [int(s) for s in seeds]
    if len(seeds) == 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a non-empty list without repeats, got {seeds}")
    # jax.random.key keeps 32 bits of a seed (without 64-bit mode): 2**32 would be seed 0
    # again, -1 seed 2**32 - 1, and a seed past 2**63 an OverflowError.
    for seed in seeds:
        if not 0 <= seed < SEED_LIMIT:
            raise ConfigError(
                f"seed {seed} is out of range: seeds must be integers 0 <= seed < 2**32 "
                f"({SEED_LIMIT}), the seeds jax.random.key tells apart"
            )
    return seeds


def _device_data(config: TrainConfig, split: tuple[Any, Any], sharding) -> Any:
    form = MODELS.get(config.model).inputs
    loss = LOSSES.get(config.loss)
    if loss.check_labels is not None:
        loss.check_labels(np.asarray(split[1]))
    data = batching.to_device_data(split[0], split[1], form, loss.label_dtype)
    return distributed.put(data, sharding)


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
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
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
      checkpoint_dir: checkpoint the sweep there (:mod:`jaxlab.checkpoint`): at every group's
        end, after every ``checkpoint_every``-th epoch (default: after epochs longer than a
        few seconds), and when SIGINT or SIGTERM arrives, which then end the sweep with
        :class:`~jaxlab.errors.Interrupted` after the epoch.
      resume: continue from the latest checkpoint in ``checkpoint_dir`` (the same arguments
        are required); the result equals an uninterrupted run's bit for bit.

    In a multi-process run (:mod:`jaxlab.distributed`) every process calls ``run_sweep`` with
    the same arguments and gets the same result; progress bars show in process 0 only.
    """
    if data_order not in DATA_ORDERS:
        raise ConfigError(f"data_order must be one of {DATA_ORDERS}, got {data_order!r}")
    seeds = _checked_seeds(seeds)
    _checked_seeds([data_seed])
    groups = plan_groups(base, grid)
    grid = normalize_grid(grid)
    if check_memory:
        memory.check_sweep(base, grid, seeds, groups)
    result = SweepResult.empty(base, grid, seeds, data_order, data_seed)
    result.meta |= {"groups": len(groups), "groups_done": 0, "complete": False}
    result.meta["majority_rate"] = majority_rate(train[1])  # chance, for the divergence rule
    mesh = Mesh(np.asarray(jax.devices()), ("models",))
    # Signals are deferred from before the checkpoint folder is made: a run whose folder exists
    # stops after an epoch, checkpointed.
    with interrupt.deferred(enabled=checkpoint_dir is not None) as stop:
        saver = _checkpoints(
            checkpoint_dir, checkpoint_every, resume, base, grid, seeds, data_order, data_seed,
            keep_params, train, validation,
        )  # fmt: skip
        start_at = saver.position if saver is not None else None
        kept = _restore_record(saver, result) if start_at is not None else {}
        sweep = _Sweep(
            result, kept, saver, (train, validation), seeds, data_order == "per_model",
            data_seed, mesh, check_memory, keep_params, verbose and distributed.is_main(),
            label, on_epoch_end, len(groups), stop,
        )  # fmt: skip
        try:
            done = 0  # epochs of the groups before this one: checkpoints are numbered by them
            for number, group in enumerate(groups):
                if start_at is None or number > start_at.group:
                    sweep.run_group(number, group, done)
                elif number == start_at.group:
                    sweep.run_group(number, group, done, resume_from=start_at)
                done += group.config.epochs
                result.meta["groups_done"] = number + 1
                if keep_params:
                    result.final_params.append((group.fixed, group.vmapped, kept[number]))
        finally:
            if saver is not None:
                saver.close()  # a checkpoint being written is finished, whatever happened
    result.meta["complete"] = True
    return result


@dataclasses.dataclass
class _Sweep:
    """What every compiled group of a sweep shares while it runs."""

    result: SweepResult
    kept: dict[int, Any]  # final parameters of finished groups (keep_params)
    saver: checkpoint.SweepCheckpoints | None
    data: tuple[Any, Any]
    seeds: list[int]
    per_model: bool
    data_seed: int
    mesh: Mesh
    check_memory: bool
    keep_params: bool
    verbose: bool
    label: str | None
    on_epoch_end: Callable[[SweepResult], None] | None
    groups: int
    stop: interrupt.Flag = dataclasses.field(default_factory=interrupt.Flag)
    datasets: dict[tuple, tuple] = dataclasses.field(default_factory=dict)

    def run_group(self, number: int, group: Group, before: int, resume_from=None) -> None:
        """Trains group ``number`` (from a checkpoint's epoch with ``resume_from``)."""
        from tqdm.auto import tqdm

        config = group.config
        replicated = NamedSharding(self.mesh, PartitionSpec())
        by_model = NamedSharding(self.mesh, PartitionSpec("models"))
        key = (MODELS.get(config.model).inputs, config.loss)
        if key not in self.datasets:
            self.datasets[key] = tuple(_device_data(config, s, replicated) for s in self.data)
        train_data, val_data = self.datasets[key]
        model_seeds, hyper = hyperparameters_of(group, self.seeds)
        count = len(model_seeds)
        padded = math.ceil(count / self.mesh.size) * self.mesh.size
        take = np.r_[np.arange(count), np.zeros(padded - count, int)]  # pad with model 0
        program = _program(group, train_data, val_data, padded // self.mesh.size)
        if self.check_memory:
            one = {k: v[:1] for k, v in hyper.items()}
            memory.check_group(program, padded // self.mesh.size, train_data, one, count)
        hyper = {k: distributed.put(v[take], by_model) for k, v in hyper.items()}
        init_keys = distributed.put(_init_keys(model_seeds[take]), by_model)
        state = distributed.put(
            engine.compiled_init(program, hyper, init_keys, train_data), by_model
        )
        first = 0
        if resume_from is not None:
            state = self.saver.restore_state(like=state)
            program = dataclasses.replace(program, train_room=resume_from.train_room)
            first = resume_from.epoch
        self.result.state = state
        layers = self.result.meta.setdefault("input_layers", {})
        layers[self.result.label(group.fixed)] = program.input_layer  # what "auto" became
        stream_seeds = model_seeds[take] if self.per_model else np.asarray(self.data_seed)
        desc = self.label or f"group {number + 1}/{self.groups} ({count} models)"
        bar = tqdm(range(first, config.epochs), desc=desc, unit="epoch", disable=not self.verbose)
        for epoch in bar:
            start = time.perf_counter()
            shuffle_keys, dropout_keys = _stream_keys(stream_seeds, epoch, replicated)
            if program.gathers:  # a rare shuffle needs more room: make it, never truncate
                room = engine.compiled_room(program, self.per_model, train_data, shuffle_keys)
                if int(distributed.to_host(room)) > program.train_room:
                    program = program.with_room_for(int(distributed.to_host(room)))
            state, train_sums = engine.run_epoch(
                program, self.per_model, state, hyper, train_data, shuffle_keys, dropout_keys
            )
            val_sums = engine.compiled_evaluate(program, state, hyper, val_data)
            values = [
                distributed.to_host(s[name] / s["count"])[:count]
                for s in (train_sums, val_sums)
                for name in ("loss", "correct")
            ]
            result = self.result
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
            if self.keep_params and epoch + 1 == config.epochs:
                self.kept[number] = jax.tree.map(
                    lambda leaf, n=count: distributed.to_host(leaf)[:n], state.params
                )
            result.state = state
            timed = epoch > first  # the first epoch's time includes compiling
            stop = self.checkpoint(number, epoch + 1, config.epochs, before, state, program, timed)
            if self.on_epoch_end is not None:
                self.on_epoch_end(result)
            if stop:
                raise _interrupted(self.stop.received, self.saver)

    def checkpoint(self, number, done, epochs, before, state, program, timed) -> bool:
        """Checkpoints when due or interrupted; returns whether a signal stops the sweep."""
        if self.saver is None:
            return False
        stopping, slow = distributed.any_process(
            self.stop.received is not None, timed and self.result.seconds[-1] >= AUTO_SECONDS
        )
        if stopping or self.saver.due(done, epochs, slow):
            meta = {"group": number, "epoch": done, "train_room": program.train_room}
            meta |= {"seconds": self.result.seconds, "timings": self.result.timings}
            self.saver.save(before + done, state, record_of(self.result, self.kept), meta)
        return stopping


def _postfix(result: SweepResult, values: list[np.ndarray], count: int) -> dict[str, Any]:
    if count == 1:
        return {name: f"{float(v[0]):.4f}" for name, v in zip(METRICS, values, strict=True)}
    return {"diverged": int(result.diverged_count())}


def step_memory_bytes(config: TrainConfig, train: tuple[Any, Any]) -> int:
    """The working memory XLA plans for one train step of one model of ``config`` on this
    data, from the compiled step (never run): temporaries only, not the dataset, parameters or
    optimizer state passed in."""
    mesh = Mesh(np.asarray(jax.local_devices()[:1]), ("models",))
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
