"""The run's configuration, its PRNG keys, and ``fit``: Keras's ``model.fit`` for one model.

Keras's ``fit`` semantics: the training set is reshuffled every epoch (from the run's data key),
the last partial batch is kept, the epoch's ``loss``/``accuracy`` are sample-weighted means over
its batches (computed while the weights move), and ``val_*`` use the end-of-epoch weights.
``fit`` is :func:`jaxlab.run_sweep` of one model: the same initialization, epoch and
evaluation code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxlab import distributed
from jaxlab.errors import ConfigError
from jaxlab.layers import INPUT_LAYERS
from jaxlab.losses import LOSSES
from jaxlab.models import MODELS
from jaxlab.optim import make_optimizer, optimizer_defaults

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def _frozen(value: Any) -> Any:
    """Lists as tuples (recursively), so that configs hash."""
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run except the seed. Immutable once made.

    ``model`` names a registered model (:func:`jaxlab.register_model`) built with
    ``model_args``; ``loss`` a registered loss; ``optimizer`` a registered optimizer with
    ``learning_rate`` (None: its default) and ``optimizer_args``. ``batch_size`` at or above
    the training-set size means full-batch training. ``input_layer`` is how bag inputs reach
    their :class:`~jaxlab.layers.BagDense` (``"auto"``: the fastest measured for the backend
    and model count). ``scan_epoch=False`` runs an epoch as one compiled call per step instead
    of one ``lax.scan`` (faster for some models, e.g. convolutions on CPU).
    """

    model: str = "mlp"
    model_args: Mapping[str, Any] | tuple[tuple[str, Any], ...] = ()
    loss: str = "binary_crossentropy"
    optimizer: str = "rmsprop"
    learning_rate: float | None = None  # None: the optimizer's (Keras) default
    optimizer_args: Mapping[str, float] | tuple[tuple[str, float], ...] = ()
    epochs: int = 20
    batch_size: int = 512
    l2: float = 0.0
    eval_batch_size: int = 2500
    input_layer: str = "auto"
    # With the "ffi" first layer, update its kernel inside the compiled layer when the optimizer
    # has a rule there (jaxlab.native.fused): the same steps to float rounding, faster.
    fused_update: bool = True
    scan_epoch: bool = True

    def __post_init__(self) -> None:
        # Stored as sorted pairs so that configs hash: equal configs share compiled code.
        for name in ("model_args", "optimizer_args"):
            pairs = dict(getattr(self, name)).items()
            object.__setattr__(self, name, tuple(sorted((k, _frozen(v)) for k, v in pairs)))
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        # Finite as float32, what the models train with (1e39 would be inf there); NaN fails
        # every comparison.
        largest = float(np.finfo(np.float32).max)

        def number(value: Any) -> float:
            if isinstance(value, bool | str) or not hasattr(value, "__float__"):
                return float("nan")
            return float(value)

        learning_rate = number(self.learning_rate)
        if self.learning_rate is not None and not 0 < learning_rate <= largest:
            raise ConfigError(
                f"learning_rate must be positive and finite (at most {largest:.3g}), "
                f"got {self.learning_rate}"
            )
        if not 0 <= number(self.l2) <= largest:
            raise ConfigError(f"l2 must be >= 0 and finite (at most {largest:.3g}), got {self.l2}")
        for name in ("fused_update", "scan_epoch"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.input_layer not in INPUT_LAYERS:
            raise ConfigError(
                f"unknown input_layer {self.input_layer!r}; choose one of {INPUT_LAYERS}"
            )
        if "learning_rate" in dict(self.optimizer_args):
            raise ConfigError("give the learning rate as learning_rate=, not in optimizer_args")
        LOSSES.get(self.loss)
        self.make_model()  # unknown names and bad hyperparameters fail here, not mid-run
        make_optimizer(
            self.optimizer, learning_rate=self.learning_rate, **dict(self.optimizer_args)
        )

    def model_hyperparameters(self) -> dict[str, Any]:
        """The model's hyperparameters as used (defaults filled in)."""
        spec = MODELS.get(self.model)
        defaults = spec.defaults()
        takes_any = any(
            p.kind == p.VAR_KEYWORD for p in inspect.signature(spec.factory).parameters.values()
        )
        unknown = set(dict(self.model_args)) - set(defaults)
        if unknown and not takes_any:
            raise ConfigError(
                f"model {self.model!r} has no hyperparameter {', '.join(sorted(unknown))}; "
                f"it takes {', '.join(defaults) or 'none'}"
            )
        return defaults | dict(self.model_args)

    def make_model(self):
        """The Flax module, built by the registered factory."""
        return MODELS.get(self.model).factory(**self.model_hyperparameters())

    def hyperparameters(self) -> dict[str, float]:
        """The optimizer's hyperparameters as used (defaults filled in)."""
        values = optimizer_defaults(self.optimizer) | dict(self.optimizer_args)
        if self.learning_rate is not None:
            values["learning_rate"] = self.learning_rate
        return values


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


class FitResult(NamedTuple):
    """What :func:`fit` returns: the per-epoch history and the final :class:`TrainState`."""

    history: dict[str, list[float]]
    state: Any


def fit(
    config: TrainConfig,
    train: tuple[Any, np.ndarray],
    validation: tuple[Any, np.ndarray],
    seed: int = 0,
    *,
    data_seed: int | None = None,
    verbose: bool = True,
    on_epoch_end: Callable[[int, dict[str, list[float]], Any], None] | None = None,
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> FitResult:
    """Keras's ``model.fit`` for one model.

    Args:
      config: the run's configuration.
      train, validation: ``(inputs, labels)`` in the model's input form (for ``"bag"``: a
        SparseMultiHot, SparseFeatures or a dense 2-D array).
      seed: everything random (weights, data order, dropout) derives from it; the same as model
        ``seed`` of ``run_sweep(..., data_order="per_model")``.
      data_seed: if given, the data order and dropout derive from it instead (as in
        ``run_sweep(..., data_order="shared", data_seed=...)``).
      verbose: show a per-epoch progress bar.
      on_epoch_end: called with ``(epoch, history, state)`` after every epoch.
      checkpoint_dir, checkpoint_every, resume: checkpoints and exact resume, as in
        :func:`jaxlab.run_sweep`.

    Returns:
      ``FitResult(history, state)``: per-epoch ``loss``, ``accuracy``, ``val_loss``,
      ``val_accuracy`` and ``seconds`` (wall time of the epoch, compilation included in the
      first), and the final parameters and optimizer state. A model that diverged (a NaN or
      infinite loss, or stuck at chance: :func:`jaxlab.sweep_results.diverges_at`) has
      ``history["diverged_epoch"]`` (0-based) and ``fit`` warns (``RuntimeWarning``).
    """
    import warnings

    from jaxlab.sweep import _checked_seeds, run_sweep
    from jaxlab.sweep_results import divergence_note

    if data_seed is not None:
        try:
            _checked_seeds([data_seed])
        except ConfigError as error:
            raise ConfigError(f"data_seed: {error}") from None
    shared = data_seed is not None and data_seed != seed

    def history_of(result) -> dict[str, list[float]]:
        done = len(result.seconds)
        history = {name: [float(v) for v in result.histories[name][0, :done]] for name in METRICS}
        history["seconds"] = list(result.seconds)
        if result.diverged_epoch[0] >= 0:
            history["diverged_epoch"] = int(result.diverged_epoch[0])
        return history

    def each_epoch(result) -> None:
        if on_epoch_end is not None:
            on_epoch_end(len(result.seconds) - 1, history_of(result), _first(result.state))

    result = run_sweep(
        config,
        {},
        [seed],
        train,
        validation,
        data_order="shared" if shared else "per_model",
        data_seed=data_seed if shared else 0,
        verbose=verbose,
        on_epoch_end=each_epoch,
        label="epochs",
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
        resume=resume,
    )
    history = history_of(result)
    if "diverged_epoch" in history:
        epoch = history["diverged_epoch"]
        warnings.warn(
            f"the model diverged at epoch {epoch + 1} ({divergence_note(history, epoch)}); "
            "try a smaller learning_rate",
            RuntimeWarning,
            stacklevel=2,
        )
    return FitResult(history, _first(result.state))


def _first(state: Any) -> Any:
    """Model 0's state (gathered from every process in a multi-process run)."""

    def first(leaf):
        return leaf[0] if leaf.is_fully_addressable else distributed.to_host(leaf)[0]

    return jax.tree.map(first, state)
