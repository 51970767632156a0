"""Optimizers by name, with Keras 3's defaults and update rules.

Each registry entry is a factory taking numeric hyperparameters as keyword arguments (all with
defaults) and returning an ``optax.GradientTransformation``. Training calls it through
:func:`build_optimizer` inside the vmap over a sweep's models, with each model's own (traced)
values; :func:`make_optimizer` wraps it in ``optax.inject_hyperparams`` for use elsewhere.

Where optax's rule differs from Keras 3's (Adam's epsilon, Nadam's momentum schedule), the Keras
rule is written as an optax transformation (:mod:`jaxlab.keras_transforms`).
``docs/optimizers.md`` lists every default and difference.
User code adds optimizers with :func:`register_optimizer`, without editing jaxlab.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.errors import ConfigError
from jaxlab.keras_transforms import scale_by_keras_adam, scale_by_keras_nadam
from jaxlab.registry import Registry

OptimizerFactory = Callable[..., optax.GradientTransformation]


def _check_factory(name: str, factory: OptimizerFactory) -> None:
    if not callable(factory):
        raise ConfigError(f"optimizer {name!r}: the factory must be callable")
    parameters = inspect.signature(factory).parameters.values()
    if any(p.default is inspect.Parameter.empty for p in parameters if p.kind != p.VAR_KEYWORD):
        raise ConfigError(f"optimizer {name!r}: every hyperparameter needs a default value")
    if "learning_rate" not in inspect.signature(factory).parameters:
        raise ConfigError(f"optimizer {name!r}: the factory must take learning_rate")
    made = factory()
    if not isinstance(made, optax.GradientTransformation):
        raise ConfigError(
            f"optimizer {name!r}: the factory returned {type(made).__name__}, "
            "not an optax.GradientTransformation"
        )


def _forget(name: str) -> None:
    for kept in (EVAL_PARAMS, RANGES, FAMILIES):
        kept.pop(name, None)


OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer", check=_check_factory, forget=_forget)
# Optimizer name -> ``eval_params(params, opt_state) -> params``: the parameters to evaluate,
# for optimizers that train at other points than they are judged at (schedule-free).
EVAL_PARAMS: dict[str, Callable[[Any, Any], Any]] = {}
# Optimizer name -> {hyperparameter: allowed interval such as "[0, 1)"}; learning_rate is
# (0, inf) unless declared otherwise, and every other numeric hyperparameter must be finite.
RANGES: dict[str, dict[str, str]] = {}
# Optimizer name -> family: "adaptive" (each parameter's step scaled by its own gradients) or
# "plain" (one step size for all: SGD, with or without momentum); lesson_optimizers uses it.
FAMILIES: dict[str, str] = {}
FAMILY_NAMES = ("adaptive", "plain")
TOTAL_STEPS = "total_steps"  # a factory taking it gets the run's number of steps (schedules)
POSITIVE, NON_NEGATIVE = "(0, inf)", "[0, inf)"
DECAY = "[0, 1)"  # a moving average's decay rate: at 1 the average never moves
_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


def _parse_interval(text: str) -> tuple[float, float, bool, bool] | None:
    """``"[0, 1)"`` -> ``(0.0, 1.0, low_closed, high_closed)``; None if it is not one."""
    found = _INTERVAL.match(text) if isinstance(text, str) else None
    if found is None:
        return None
    try:
        low, high = float(found.group(2)), float(found.group(3))
    except ValueError:
        return None
    return (low, high, found.group(1) == "[", found.group(4) == "]") if low < high else None


def _checked_ranges(name: str, factory: Any, ranges: dict[str, str]) -> dict[str, str]:
    if not callable(factory):
        return {}  # the registry says so
    takes = inspect.signature(factory).parameters
    for key, interval in ranges.items():
        if key not in takes or key == TOTAL_STEPS:
            raise ConfigError(f"optimizer {name!r}: ranges names {key!r}, not a hyperparameter")
        if _parse_interval(interval) is None:
            raise ConfigError(
                f"optimizer {name!r}: the range of {key} must be an interval like '[0, 1)' "
                f"or '(0, inf)', got {interval!r}"
            )
    return dict(ranges)


def check_hyperparameters(name: str, values: dict[str, Any]) -> None:
    """Refuses (:class:`ConfigError`) a value outside its declared range (see
    :func:`register_optimizer`), a learning rate that is not positive, or a non-finite number."""
    ranges = {"learning_rate": POSITIVE} | RANGES.get(name, {})
    for key, value in values.items():
        if isinstance(value, jax.core.Tracer):
            continue  # per-model values inside a sweep; checked before it started
        interval = ranges.get(key)
        if interval is None:
            try:
                finite = bool(np.all(np.isfinite(np.asarray(value, np.float64))))
            except (TypeError, ValueError):
                continue  # not a number: the factory's own business
            if not finite:
                raise ConfigError(f"optimizer {name!r}: {key} must be finite, got {value!r}")
            continue
        low, high, low_closed, high_closed = _parse_interval(interval)
        try:
            if isinstance(value, bool | np.bool_ | str | bytes):
                raise TypeError
            number = float(value)
        except (TypeError, ValueError):
            number = None
        inside = number is not None and (low < number or (low_closed and number == low))
        inside = inside and (number < high or (high_closed and number == high))
        if not inside:
            allowed = f"positive, in {interval}" if interval == POSITIVE else f"in {interval}"
            raise ConfigError(f"optimizer {name!r}: {key} must be {allowed}, got {value!r}")


def register_optimizer(
    name: str,
    factory: OptimizerFactory | None = None,
    *,
    eval_params: Callable[[Any, Any], Any] | None = None,
    ranges: dict[str, str] | None = None,
    family: str | None = None,
    override: bool = False,
) -> Any:
    """Registers ``factory(learning_rate=..., **hyperparameters) -> GradientTransformation``
    under ``name`` (as a call or a decorator). Every hyperparameter needs a default; one named
    ``total_steps`` receives the run's number of steps (for schedules) and is not swept.
    ``eval_params(params, opt_state) -> params`` gives the parameters validation uses.
    ``ranges`` maps hyperparameters to their allowed intervals, e.g. ``{"beta": "[0, 1)"}``;
    undeclared ones need only be finite, and learning_rate positive. ``family`` is
    ``"adaptive"`` or ``"plain"`` (see :data:`FAMILIES`), for the optimizers experiment."""
    if family is not None and family not in FAMILY_NAMES:
        raise ConfigError(
            f"optimizer {name!r}: family must be one of {', '.join(FAMILY_NAMES)}, got {family!r}"
        )

    def add(factory: OptimizerFactory) -> OptimizerFactory:
        checked = _checked_ranges(name, factory, ranges or {})
        OPTIMIZERS.register(name, factory, override=override)
        if eval_params is not None:
            EVAL_PARAMS[name] = eval_params
        else:
            EVAL_PARAMS.pop(name, None)
        if checked:
            RANGES[name] = checked
        else:
            RANGES.pop(name, None)
        if family is not None:
            FAMILIES[name] = family
        else:
            FAMILIES.pop(name, None)
        return factory

    return add if factory is None else add(factory)


# The registry. Every default is Keras 3's (keras/src/optimizers/*.py), except where noted.
# Ranges: decays in [0, 1); SGD's momentum in [0, 1] and Lion's beta_1 in (0, 1] as Keras
# checks them; epsilon positive; weight decay and Adagrad's initial accumulator >= 0.
ADAM_RANGES = {"beta_1": DECAY, "beta_2": DECAY, "epsilon": POSITIVE}


@register_optimizer("sgd", family="plain")
def sgd(learning_rate: float = 0.01) -> optax.GradientTransformation:
    """Keras 3 SGD: lr 0.01, no momentum."""
    return optax.sgd(learning_rate)


@register_optimizer("momentum", ranges={"momentum": "[0, 1]"}, family="plain")
def momentum(learning_rate: float = 0.01, momentum: float = 0.9) -> optax.GradientTransformation:
    """Keras 3 ``SGD(momentum=0.9)`` (Keras's default momentum, 0.0, is plain sgd).

    Keras keeps ``m = mu m - lr g``; optax keeps ``m = mu m + g`` and scales by lr: the same
    steps while lr is constant.
    """
    return optax.sgd(learning_rate, momentum=momentum)


@register_optimizer("nesterov", ranges={"momentum": "[0, 1]"}, family="plain")
def nesterov(learning_rate: float = 0.01, momentum: float = 0.9) -> optax.GradientTransformation:
    """Keras 3 ``SGD(momentum=0.9, nesterov=True)``; same note on lr as ``momentum``."""
    return optax.sgd(learning_rate, momentum=momentum, nesterov=True)


@register_optimizer(
    "adagrad",
    ranges={"initial_accumulator_value": NON_NEGATIVE, "epsilon": POSITIVE},
    family="adaptive",
)
def adagrad(
    learning_rate: float = 1e-3, initial_accumulator_value: float = 0.1, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    """Keras 3 Adagrad: ``a = a0 + sum g^2; w -= lr g / sqrt(a + eps)``."""
    return optax.adagrad(
        learning_rate, initial_accumulator_value=initial_accumulator_value, eps=epsilon
    )


@register_optimizer("rmsprop", ranges={"rho": DECAY, "epsilon": POSITIVE}, family="adaptive")
def rmsprop(
    learning_rate: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    """Keras 3 RMSprop: ``v = rho v + (1 - rho) g^2; w -= lr g / sqrt(v + eps)``."""
    return optax.rmsprop(learning_rate, decay=rho, eps=epsilon)


@register_optimizer("rmsprop_keras2", ranges={"rho": DECAY, "epsilon": POSITIVE}, family="adaptive")
def rmsprop_keras2(
    learning_rate: float = 1e-3, rho: float = 0.9, epsilon: float = 1e-8
) -> optax.GradientTransformation:
    """Keras 2 RMSprop (the book's): ``w -= lr g / (sqrt(v) + eps)``."""
    return optax.rmsprop(learning_rate, decay=rho, eps=epsilon, eps_in_sqrt=False)


@register_optimizer("adam", ranges=ADAM_RANGES, family="adaptive")
def adam(
    learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    """Keras 3 Adam, its epsilon placement included (see :func:`scale_by_keras_adam`)."""
    return optax.chain(
        scale_by_keras_adam(beta_1, beta_2, epsilon), optax.scale_by_learning_rate(learning_rate)
    )


@register_optimizer("adamw", ranges=ADAM_RANGES | {"weight_decay": NON_NEGATIVE}, family="adaptive")
def adamw(
    learning_rate: float = 1e-3,
    weight_decay: float = 0.004,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
) -> optax.GradientTransformation:
    """Keras 3 AdamW: ``w -= lr (wd w + adam direction)``, every parameter decayed."""
    return optax.chain(
        scale_by_keras_adam(beta_1, beta_2, epsilon),
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


@register_optimizer("nadam", ranges=ADAM_RANGES, family="adaptive")
def nadam(
    learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7
) -> optax.GradientTransformation:
    """Keras 3 Nadam, its momentum schedule included (see :func:`scale_by_keras_nadam`)."""
    return optax.chain(
        scale_by_keras_nadam(beta_1, beta_2, epsilon), optax.scale_by_learning_rate(learning_rate)
    )


# Lion is adaptive: each parameter moves by lr times the sign of its own momentum, whatever its
# gradient's scale (Adam's step with beta_1 = beta_2 = 0 is sign(g) too).
@register_optimizer("lion", ranges={"beta_1": "(0, 1]", "beta_2": DECAY}, family="adaptive")
def lion(
    learning_rate: float = 1e-3, beta_1: float = 0.9, beta_2: float = 0.99
) -> optax.GradientTransformation:
    """Keras 3 Lion: ``w -= lr sign(b1 m + (1 - b1) g); m = b2 m + (1 - b2) g``, no decay."""
    return optax.chain(
        optax.scale_by_lion(b1=beta_1, b2=beta_2), optax.scale_by_learning_rate(learning_rate)
    )


def optimizer_defaults(name: str) -> dict[str, Any]:
    """The default hyperparameters of a registered optimizer."""
    parameters = inspect.signature(OPTIMIZERS.get(name)).parameters.values()
    return {
        p.name: p.default for p in parameters if p.kind != p.VAR_KEYWORD and p.name != TOTAL_STEPS
    }


def build_optimizer(
    name: str, hyperparameters: dict[str, Any], total_steps: int | None = None
) -> optax.GradientTransformation:
    """The named optimizer made with these (possibly traced, per-model) hyperparameters, and
    ``total_steps`` if its factory takes it; updates and state keep their dtypes."""
    factory = OPTIMIZERS.get(name)
    extra = {}
    if TOTAL_STEPS in inspect.signature(factory).parameters and total_steps is not None:
        extra[TOTAL_STEPS] = total_steps
    return keep_dtypes(factory(**hyperparameters, **extra))


def make_optimizer(name: str, **hyperparameters: float) -> optax.GradientTransformation:
    """The named optimizer with its hyperparameters injected into the state (as float32).

    Unknown hyperparameter names and values out of range (:func:`check_hyperparameters`) are
    rejected.
    """
    factory = OPTIMIZERS.get(name)
    defaults = optimizer_defaults(name)
    unknown = set(hyperparameters) - set(defaults)
    if unknown:
        raise ConfigError(
            f"optimizer {name!r} has no hyperparameter {', '.join(sorted(unknown))}; "
            f"it takes {', '.join(defaults)}"
        )
    values = defaults | {k: v for k, v in hyperparameters.items() if v is not None}
    check_hyperparameters(name, values)
    return keep_dtypes(optax.inject_hyperparams(factory, hyperparam_dtype=jnp.float32)(**values))


def keep_dtypes(
    optimizer: optax.GradientTransformationExtraArgs,
) -> optax.GradientTransformationExtraArgs:
    """``optimizer`` with its updates in the gradients' dtypes and its state in its own.

    Float32 hyperparameters promote bfloat16 arithmetic to float32; without the casts some optax
    states (momentum, rmsprop, lion) would change dtype after one step, which breaks
    ``lax.scan`` loops and recompiles jitted steps.
    """

    def update(updates, state, params=None, **extra_args):
        new_updates, new_state = optimizer.update(updates, state, params, **extra_args)
        return optax.tree.cast_like(new_updates, updates), optax.tree.cast_like(new_state, state)

    return optax.GradientTransformationExtraArgs(optimizer.init, update)
