"""One compiled group of models: their initialization, epoch and evaluation, vmapped.

A :class:`Program` is what keys compiled code: the group's :class:`TrainConfig` (its model,
loss, optimizer and static hyperparameters) and the names of the hyperparameters each model
has its own value of. Inside the vmap over models, :meth:`Program.build` makes each model's
Flax module, loss and Optax optimizer from its own (traced) values, and the step is
:func:`jaxlab.step.make_train_step` of them, or the fused first-layer step of
:mod:`jaxlab.native.fused` that stands in for it. One model (``fit``) is a group of one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import batching
from jaxlab.batching import ArrayData, DeviceData
from jaxlab.losses import LOSSES
from jaxlab.models import MODELS, Choice
from jaxlab.optim import EVAL_PARAMS, build_optimizer
from jaxlab.step import TrainState, make_eval_step, make_train_step
from jaxlab.train import TrainConfig

OPTIMIZER, MODEL, L2 = "optimizer/", "model/", "l2"  # keys of the per-model hyperparameters


@dataclasses.dataclass(frozen=True)
class Program:
    """A compiled group, static and hashable. Per-model hyperparameters (``hyper``) are a dict:
    ``optimizer/<name>`` for every optimizer hyperparameter, ``model/<name>`` for the model's
    swept floats and :class:`Choice` indices, ``l2`` when it is swept."""

    config: TrainConfig
    floats: tuple[str, ...] = ()  # model hyperparameters traced per model
    choices: tuple[tuple[str, tuple[str, ...]], ...] = ()  # name -> options, chosen per model
    input_layer: str = "dense"  # resolved: "ffi", "sparse" or "dense" (bag inputs)
    num_train: int = 1
    num_eval: int = 1
    train_room: int = 0  # nonzeros a gathered training batch holds (sparse, dense)
    eval_room: int = 0
    fused: bool = False  # the first layer's kernel is updated by jaxlab.native.fused
    # registry.generation() when made: a model, loss or optimizer registered again under its
    # name (override=True) makes a new program, never a run of the old one.
    registries: int = 0

    @property
    def batch_size(self) -> int:
        return min(self.config.batch_size, self.num_train)

    @property
    def eval_batch_size(self) -> int:
        return min(self.config.eval_batch_size, self.num_eval)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_train // self.batch_size)

    @property
    def gathers(self) -> bool:
        """Whether bag batches are gathered to a static size (planned room for nonzeros)."""
        return self.train_room > 0

    def with_room_for(self, nonzeros: int) -> Program:
        """This program, with training batches large enough for ``nonzeros`` (recompiles)."""
        return dataclasses.replace(self, train_room=-(-int(nonzeros) // 1024) * 1024)

    def build(self, hyper: dict[str, jax.Array]):
        """One model's ``(module, loss, optimizer, l2)`` from its hyperparameters."""
        config = self.config
        args = config.model_hyperparameters()
        args |= {name: hyper[MODEL + name] for name in self.floats}
        args |= {name: Choice(hyper[MODEL + name], options) for name, options in self.choices}
        model = MODELS.get(config.model).factory(**args)
        values = {k.removeprefix(OPTIMIZER): v for k, v in hyper.items() if k.startswith(OPTIMIZER)}
        total_steps = config.epochs * self.steps_per_epoch
        optimizer = build_optimizer(config.optimizer, values, total_steps)
        return model, LOSSES.get(config.loss), optimizer, hyper.get(L2, config.l2)

    def train_step(self, hyper: dict[str, jax.Array]):
        model, loss, optimizer, l2 = self.build(hyper)
        factory = make_train_step
        if self.fused:
            from jaxlab.native import fused

            values = {k.removeprefix(OPTIMIZER): v for k, v in hyper.items()}
            factory = fused.step_factory(fused.rule_for(self.config.optimizer), values)
        return factory(model, loss, optimizer, l2=l2)

    def batch(self, data: DeviceData | ArrayData, rows_B: jax.Array, room: int) -> dict:
        return batching.make_batch(data, rows_B, self.input_layer, room)


def init_models(program: Program, hyper, keys, data) -> TrainState:
    """Every model's state from its hyperparameters and init key (leading axis: models)."""
    example = program.batch(data, jnp.zeros(1, jnp.int32), max(program.train_room, 1))

    def one(hyper, key):
        model, _, optimizer, _ = program.build(hyper)
        params = model.init({"params": key}, example["inputs"])["params"]
        return TrainState.create(params, optimizer)

    return jax.vmap(one)(hyper, keys)


def epoch_batches(program: Program, per_model: bool, shuffle_keys) -> jax.Array:
    """The epoch's batches of row numbers: ``(S, B)``, or ``(S, M, B)`` per model."""

    def one(key):
        return batching.shuffled_batches(key, program.num_train, program.batch_size)

    return jnp.moveaxis(jax.vmap(one)(shuffle_keys), 0, 1) if per_model else one(shuffle_keys)


def train_steps(program: Program, per_model: bool, state, hyper, data, rows, dropout_keys, index):
    """Step ``index`` of every model on the rows ``rows`` (its own with ``per_model``); the
    step's dropout key is the epoch's folded with ``index``."""
    axis = 0 if per_model else None

    def one(state, hyper, rows_B, dropout_key):
        batch = program.batch(data, rows_B, program.train_room)
        key = jax.random.fold_in(dropout_key, index)
        return program.train_step(hyper)(state, batch, key)

    return jax.vmap(one, in_axes=(0, 0, axis, axis))(state, hyper, rows, dropout_keys)


def train_epoch(program: Program, per_model: bool, state, hyper, data, shuffle_keys, dropout_keys):
    """One pass over the reshuffled training set as a ``lax.scan`` over a vmapped step (the
    models' state keeps its layout between steps); returns the state and the epoch's sums."""
    batches = epoch_batches(program, per_model, shuffle_keys)

    def body(state, inputs):
        index, rows = inputs
        return train_steps(program, per_model, state, hyper, data, rows, dropout_keys, index)

    steps = jnp.arange(batches.shape[0])
    state, sums = jax.lax.scan(body, state, (steps, batches))
    return state, jax.tree.map(lambda x: jnp.sum(x, axis=0), sums)


def evaluate(program: Program, state: TrainState, hyper, data) -> dict[str, jax.Array]:
    """Every model's sums over a whole dataset (the loss with its L2 penalty, as Keras
    reports it), with the parameters its optimizer evaluates at."""
    eval_params = EVAL_PARAMS.get(program.config.optimizer)
    batches = batching.ordered_batches(program.num_eval, program.eval_batch_size)

    def one(params, opt_state, hyper, rows_B):
        model, loss, _, l2 = program.build(hyper)
        if eval_params is not None:
            params = eval_params(params, opt_state)
        batch = program.batch(data, rows_B, program.eval_room)
        return make_eval_step(model, loss, l2=l2)(params, batch)

    def body(total, rows_B):
        sums = jax.vmap(one, in_axes=(0, 0, 0, None))(state.params, state.opt_state, hyper, rows_B)
        return jax.tree.map(jnp.add, total, sums), None

    models = jax.tree.leaves(hyper)[0].shape[0]
    zero = {name: jnp.zeros(models, jnp.float32) for name in ("loss", "correct", "count")}
    return jax.lax.scan(body, zero, batches)[0]


def needed_room(program: Program, per_model: bool, data, shuffle_keys) -> jax.Array:
    """The most nonzeros in any training batch of the epoch these keys shuffle."""
    return batching.most_nonzeros(data, epoch_batches(program, per_model, shuffle_keys))


# Compiled once per (program, data order); both are static and hashable.
compiled_init = jax.jit(init_models, static_argnums=0)
compiled_epoch = jax.jit(train_epoch, static_argnums=(0, 1), donate_argnums=2)
compiled_steps = jax.jit(train_steps, static_argnums=(0, 1), donate_argnums=2)
compiled_batches = jax.jit(epoch_batches, static_argnums=(0, 1))
compiled_evaluate = jax.jit(evaluate, static_argnums=0)
compiled_room = jax.jit(needed_room, static_argnums=(0, 1))


def run_epoch(program: Program, per_model: bool, state, hyper, data, shuffle_keys, dropout_keys):
    """:func:`train_epoch`, or with ``scan_epoch=False`` one compiled call per step."""
    if program.config.scan_epoch:
        return compiled_epoch(program, per_model, state, hyper, data, shuffle_keys, dropout_keys)
    batches = compiled_batches(program, per_model, shuffle_keys)
    total = None
    for index in range(batches.shape[0]):
        state, sums = compiled_steps(
            program, per_model, state, hyper, data, batches[index], dropout_keys, index
        )
        total = sums if total is None else jax.tree.map(jnp.add, total, sums)
    return state, total


def estimate_bytes(program: Program, models_per_device: int, data: Any, hyper_one) -> int:
    """A generous estimate of one device's peak memory for a group, before compiling.

    Checked against experiments/benchmark.py on CPU: 256 models of the lesson's network peaked
    at 5.9 and 1.2 GiB (sparse and dense first layer); this estimates 11.4 and 1.5 GiB.
    """
    keys = jax.random.split(jax.random.key(0), 1)
    shapes = jax.eval_shape(lambda h, k: init_models(program, h, k, data), hyper_one, keys)
    state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))
    params = jax.tree.leaves(shapes.params)
    param_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in params)
    width = max(leaf.shape[-1] if leaf.ndim else 1 for leaf in params)
    rows_at_once = max(program.batch_size, program.eval_batch_size)
    row_size = int(np.prod(data.inputs.shape[2:] or (1,))) if isinstance(data, ArrayData) else 1
    if isinstance(data, ArrayData) and data.inputs.ndim == 2 and data.inputs.dtype == jnp.int32:
        row_size = data.inputs.shape[1]  # tokens: every position carries activations
    activations = 8 * rows_at_once * row_size * width * 4
    shared = sum(leaf.nbytes for leaf in jax.tree.leaves(data))
    if isinstance(data, DeviceData) and program.input_layer == "dense":
        # The dense batch depends on the data alone, so vmap builds it once for all models.
        shared += 2 * rows_at_once * data.dim * 4
    elif isinstance(data, DeviceData) and program.gathers:
        activations += 2 * max(program.train_room, program.eval_room) * width * 4
    per_model = state_bytes + param_bytes  # the state (donated), and the gradients
    return models_per_device * (2 * per_model + activations) + shared
