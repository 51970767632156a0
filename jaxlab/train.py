"""Training as pure functions: a jit-compiled epoch of train steps, evaluation, and ``fit``.

Keras's ``fit`` semantics: the training set is reshuffled every epoch (from the run's data key),
the last partial batch is kept, the epoch's ``loss``/``accuracy`` are sample-weighted means over
its batches (computed while the weights move), and ``val_*`` use the end-of-epoch weights.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxlab import batching, fused
from jaxlab.batching import DeviceData
from jaxlab.errors import ConfigError
from jaxlab.models import ModelConfig, init_params
from jaxlab.optim import make_optimizer, optimizer_defaults

# Keras clips probabilities to [eps, 1 - eps] in binary_crossentropy; clipping the logit
# to +-log((1 - eps) / eps) is the same thing.
KERAS_EPSILON = 1e-7
LOGIT_CLIP = float(np.log((1 - KERAS_EPSILON) / KERAS_EPSILON))
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run except the seed. Immutable once made.

    ``batch_size`` at or above the training-set size means full-batch training (one step
    per epoch).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: str = "rmsprop"
    learning_rate: float | None = None  # None: the optimizer's (Keras) default
    optimizer_args: Mapping[str, float] | tuple[tuple[str, float], ...] = ()
    epochs: int = 20
    batch_size: int = 512
    l2: float = 0.0
    dropout: float = 0.0
    eval_batch_size: int = 2500
    # With the "ffi" first layer, update its kernel inside the compiled layer when the optimizer
    # has a rule there (jaxlab.fused): the same steps to float rounding, faster. False: optax.
    fused_update: bool = True

    def __post_init__(self) -> None:
        # Stored as sorted pairs so that configs hash: equal configs share compiled code.
        object.__setattr__(self, "optimizer_args", tuple(sorted(dict(self.optimizer_args).items())))
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.l2 >= 0:
            raise ConfigError(f"l2 must be >= 0, got {self.l2}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.fused_update, bool):
            raise ConfigError(f"fused_update must be True or False, got {self.fused_update!r}")
        self.make_optimizer()  # unknown names and hyperparameters fail here, not mid-run

    def make_optimizer(self) -> optax.GradientTransformation:
        return make_optimizer(
            self.optimizer, learning_rate=self.learning_rate, **dict(self.optimizer_args)
        )

    def hyperparameters(self) -> dict[str, float]:
        """The optimizer's hyperparameters as used (defaults filled in)."""
        values = optimizer_defaults(self.optimizer) | dict(self.optimizer_args)
        if self.learning_rate is not None:
            values["learning_rate"] = self.learning_rate
        return values


@struct.dataclass
class TrainState:
    params: Any
    opt_state: Any


@struct.dataclass
class ModelSettings:
    """Per-model numbers read by the forward pass and the loss; arrays so that a sweep can
    give each model its own (``activation`` indexes a tuple of activation names)."""

    l2: jax.Array
    dropout: jax.Array
    activation: jax.Array

    @classmethod
    def of(cls, config: TrainConfig) -> ModelSettings:
        return cls(jnp.float32(config.l2), jnp.float32(config.dropout), jnp.int32(0))


@struct.dataclass
class Sums:
    """Weighted sums over examples: mean loss = loss / count."""

    loss: jax.Array
    correct: jax.Array
    count: jax.Array

    def means(self) -> tuple[jax.Array, jax.Array]:
        return self.loss / self.count, self.correct / self.count


def binary_crossentropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Keras's binary cross-entropy (probabilities clipped to [1e-7, 1 - 1e-7]), from logits."""
    clipped = jnp.clip(logits, -LOGIT_CLIP, LOGIT_CLIP)
    return optax.sigmoid_binary_cross_entropy(clipped, labels)


def l2_penalty(params, strength: jax.Array) -> jax.Array:
    """Keras's ``l2 * sum(w ** 2)`` over every kernel (biases are not regularized)."""
    kernels = [layer["kernel"] for layer in params.values()]
    return strength * sum(jnp.sum(kernel**2) for kernel in kernels)


@dataclass(frozen=True)
class Trainer:
    """Pure functions for one model, closed over static sizes; vmap them for many models."""

    config: TrainConfig
    num_train: int
    train_nonzeros: int
    eval_nonzeros: int
    num_eval: int
    penalized: bool = True  # False: no model has an L2 penalty, so none is computed
    drops: bool = True  # False: no model has dropout, so no masks are drawn

    @property
    def batch_size(self) -> int:
        return min(self.config.batch_size, self.num_train)

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_train // self.batch_size)

    @property
    def gathers(self) -> bool:
        """Whether batches are gathered into SparseRows of a static size (every first layer but
        "ffi", which reads its rows in place and needs no room for nonzeros)."""
        return self.config.model.input_layer != "ffi"

    def batch(self, data: DeviceData, rows_B: jax.Array, max_nonzeros: int):
        """``(inputs, labels_B, weights_B)`` of the rows ``rows_B`` in the first layer's form."""
        if not self.gathers:
            return batching.csr_batch(data, rows_B)
        return batching.gather_batch(data, rows_B, max_nonzeros)

    def nonzeros_needed(self, data: DeviceData, shuffle_key: jax.Array) -> jax.Array:
        """The most nonzeros in any batch of the epoch that ``shuffle_key`` shuffles."""
        return batching.most_nonzeros(data, self.epoch_batches(shuffle_key))

    def with_room_for(self, nonzeros: int) -> Trainer:
        """This trainer, with batches large enough for ``nonzeros`` (recompiles)."""
        return dataclasses.replace(self, train_nonzeros=-(-int(nonzeros) // 1024) * 1024)

    def init(self, key: jax.Array) -> TrainState:
        params = init_params(self.config.model, key)
        return TrainState(params, self.config.make_optimizer().init(params))

    @property
    def fused_rule(self) -> fused.FusedRule | None:
        """The compiled rule that updates the first layer's kernel, if one is used."""
        if self.gathers or not self.config.fused_update:
            return None
        return fused.rule_for(self.config.optimizer)

    def _sums(
        self, params, inputs, labels, weights, reg, dropout_key, perturbations=None
    ) -> tuple[jax.Array, Sums]:
        train = dropout_key is not None and self.drops
        variables = {"params": params}
        if perturbations is not None:
            variables["perturbations"] = perturbations
        logits = self.config.model.module().apply(
            variables,
            inputs,
            dropout_rate=reg.dropout,
            activation_index=reg.activation,
            train=train,
            rngs={"dropout": dropout_key} if train else None,
        )
        count = jnp.sum(weights)
        penalty = l2_penalty(params, reg.l2) if self.penalized else 0.0
        data_loss = jnp.sum(weights * binary_crossentropy(logits, labels))
        correct = jnp.sum(weights * ((logits > 0) == (labels > 0.5)))
        loss = data_loss / jnp.maximum(count, 1.0) + penalty
        return loss, Sums(data_loss + count * penalty, correct, count)

    def train_step(self, state: TrainState, data: DeviceData, rows_B, reg, dropout_key):
        """One update on the rows ``rows_B``; returns the new state and the batch's sums."""
        inputs, labels, weights = self.batch(data, rows_B, self.train_nonzeros)
        optimizer = self.config.make_optimizer()
        rule = self.fused_rule
        if rule is not None and inputs.shift is None:

            def loss(params, perturbations):
                return self._sums(params, inputs, labels, weights, reg, dropout_key, perturbations)

            l2 = reg.l2 if self.penalized else 0.0
            params, opt_state, sums = fused.step(
                rule, loss, state.params, state.opt_state, optimizer, inputs, l2
            )
            return TrainState(params, opt_state), sums
        grad_fn = jax.grad(self._sums, has_aux=True)
        grads, sums = grad_fn(state.params, inputs, labels, weights, reg, dropout_key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return TrainState(optax.apply_updates(state.params, updates), opt_state), sums

    def epoch_batches(self, shuffle_key: jax.Array) -> jax.Array:
        """The epoch's batches of row numbers, reshuffled by ``shuffle_key`` (S x B)."""
        return batching.shuffled_batches(shuffle_key, self.num_train, self.batch_size)

    def indexed_step(self, state: TrainState, data: DeviceData, rows_B, dropout_key, reg, index):
        """:meth:`train_step` number ``index`` of an epoch (its dropout key folded in)."""
        key = jax.random.fold_in(dropout_key, index)
        return self.train_step(state, data, rows_B, reg, key)

    def train_epoch(
        self,
        state: TrainState,
        data: DeviceData,
        shuffle_key: jax.Array,
        dropout_key: jax.Array,
        reg: ModelSettings,
    ) -> tuple[TrainState, Sums]:
        """One pass over the reshuffled training set, as a ``lax.scan`` of train steps."""
        batches_SxB = self.epoch_batches(shuffle_key)
        return scan_steps(self.indexed_step, state, data, batches_SxB, dropout_key, reg)

    def eval_step(self, params, data: DeviceData, rows_B, reg: ModelSettings) -> Sums:
        """The sums of one evaluation batch (loss with the L2 penalty, as Keras reports it)."""
        inputs, labels, weights = self.batch(data, rows_B, self.eval_nonzeros)
        return self._sums(params, inputs, labels, weights, reg, None)[1]

    def eval_batches(self) -> jax.Array:
        batch_size = min(self.config.eval_batch_size, self.num_eval)
        return batching.ordered_batches(self.num_eval, batch_size)

    def evaluate(self, params, data: DeviceData, reg: ModelSettings) -> Sums:
        """Loss (with the L2 penalty, as Keras reports it) and accuracy over a whole dataset."""
        return scan_eval(self.eval_step, params, data, self.eval_batches(), reg)


def scan_steps(step, state, data, batches_SxB, dropout_key, reg) -> tuple[Any, Sums]:
    """``step(state, data, rows_B, dropout_key, reg, index)`` over the epoch's batches in a
    ``lax.scan``; the batch sums added up over the epoch. ``step`` may be vmapped over models
    (the scan stays outside the vmap, so the models' state keeps its layout between steps)."""

    def body(state, inputs):
        index, rows_B = inputs
        return step(state, data, rows_B, dropout_key, reg, index)

    steps = jnp.arange(batches_SxB.shape[0])
    state, sums = jax.lax.scan(body, state, (steps, batches_SxB))
    return state, jax.tree_util.tree_map(lambda x: jnp.sum(x, axis=0), sums)


def scan_eval(step, params, data, batches_SxB, reg) -> Sums:
    """``step(params, data, rows_B, reg)`` over ordered batches in a ``lax.scan``, summed."""

    def body(total, rows_B):
        sums = step(params, data, rows_B, reg)
        return jax.tree_util.tree_map(jnp.add, total, sums), None

    zero = jax.tree_util.tree_map(
        lambda x: jnp.zeros(x.shape, x.dtype),
        jax.eval_shape(step, params, data, batches_SxB[0], reg),
    )
    total, _ = jax.lax.scan(body, zero, batches_SxB)
    return total


# Compiled once per distinct Trainer (a hashable, static argument), shared by every fit.
train_epoch = jax.jit(Trainer.train_epoch, static_argnums=0, donate_argnums=1)
nonzeros_needed = jax.jit(Trainer.nonzeros_needed, static_argnums=0)
evaluate = jax.jit(Trainer.evaluate, static_argnums=0)


def make_trainer(
    config: TrainConfig,
    train: DeviceData,
    validation: DeviceData,
    models_per_device: int = 1,
    penalized: bool | None = None,
    drops: bool | None = None,
) -> Trainer:
    """A :class:`Trainer` sized for these datasets, its first layer chosen for the model count.

    ``penalized``, ``drops``: whether any model it trains has an L2 penalty or dropout
    (default: ``config.l2 > 0``, ``config.dropout > 0``); without, the penalty (a pass over every
    kernel) or the dropout masks are left out of the program.
    """
    config = dataclasses.replace(config, model=config.model.for_models(models_per_device))
    batch_size = min(config.batch_size, train.num_rows)
    eval_batch = min(config.eval_batch_size, validation.num_rows)
    return Trainer(
        config,
        num_train=train.num_rows,
        train_nonzeros=batching.nonzeros_capacity(batching.row_lengths(train), batch_size),
        eval_nonzeros=batching.max_nonzeros_ordered(batching.row_lengths(validation), eval_batch),
        num_eval=validation.num_rows,
        penalized=config.l2 > 0 if penalized is None else penalized,
        drops=config.dropout > 0 if drops is None else drops,
    )


def run_keys(seed: int, data_seed: int | None = None) -> dict[str, jax.Array]:
    """Named keys: ``init`` (weights) from ``seed``; ``data`` (shuffling) and ``dropout``
    from ``data_seed`` (default: ``seed``), so init and data-order variance can be studied apart.
    """
    init_key, data_key, dropout_key = jax.random.split(jax.random.key(seed), 3)
    if data_seed is not None and data_seed != seed:
        _, data_key, dropout_key = jax.random.split(jax.random.key(data_seed), 3)
    return {"init": init_key, "data": data_key, "dropout": dropout_key}


def epoch_keys(keys: Mapping[str, jax.Array], epoch: int) -> tuple[jax.Array, jax.Array]:
    """The shuffle and dropout keys of one epoch."""
    return jax.random.fold_in(keys["data"], epoch), jax.random.fold_in(keys["dropout"], epoch)


def fit(
    config: TrainConfig,
    train: tuple[Any, np.ndarray],
    validation: tuple[Any, np.ndarray],
    seed: int = 0,
    *,
    data_seed: int | None = None,
    verbose: bool = True,
    on_epoch_end: Callable[[int, dict[str, list[float]]], None] | None = None,
) -> dict[str, list[float]]:
    """Keras's ``model.fit`` for one model.

    Args:
      config: the run's configuration.
      train, validation: ``(inputs, labels)``, inputs a SparseMultiHot or a dense 2-D array.
      seed: everything random (weights, data order, dropout) derives from it.
      data_seed: if given, the data order and dropout derive from it instead.
      verbose: show a per-epoch progress bar.
      on_epoch_end: called with ``(epoch, history)`` after every epoch (e.g. to save progress).

    Returns:
      The history: per-epoch ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` and
      ``seconds`` (wall time of the epoch, compilation included in the first).
    """
    from tqdm.auto import tqdm

    train_data = batching.to_device_data(*train)
    val_data = batching.to_device_data(*validation)
    trainer = make_trainer(config, train_data, val_data)
    keys = run_keys(seed, data_seed)
    reg = ModelSettings.of(config)
    state = trainer.init(keys["init"])
    history: dict[str, list[float]] = {name: [] for name in (*METRICS, "seconds")}
    bar = tqdm(range(config.epochs), desc="epochs", unit="epoch", disable=not verbose)
    for epoch in bar:
        start = time.perf_counter()
        shuffle_key, dropout_key = epoch_keys(keys, epoch)
        if trainer.gathers:
            needed = int(nonzeros_needed(trainer, train_data, shuffle_key))
            if needed > trainer.train_nonzeros:  # a rare shuffle: make room, never truncate
                trainer = trainer.with_room_for(needed)
        state, train_sums = train_epoch(trainer, state, train_data, shuffle_key, dropout_key, reg)
        val_sums = evaluate(trainer, state.params, val_data, reg)
        values = (*train_sums.means(), *val_sums.means())
        for name, value in zip(METRICS, values, strict=True):
            history[name].append(float(value))
        history["seconds"].append(time.perf_counter() - start)
        bar.set_postfix({name: f"{history[name][-1]:.4f}" for name in METRICS})
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history


def step_memory_bytes(trainer: Trainer, data: DeviceData) -> int:
    """The working memory XLA plans for one train step of one model, from the compiled step
    (never run): temporaries only, not the dataset, parameters or optimizer state passed in."""
    key = jax.random.key(0)
    state = jax.eval_shape(trainer.init, key)
    rows = jax.ShapeDtypeStruct((trainer.batch_size,), jnp.int32)
    lowered = jax.jit(trainer.train_step).lower(
        state, data, rows, ModelSettings.of(trainer.config), key
    )
    return int(lowered.compile().memory_analysis().temp_size_in_bytes)
