"""A sweep's grid: which axes train side by side and which split it into compiled groups.

See :mod:`jaxlab.sweep` for what can be swept. :func:`plan_groups` validates every axis and
value through the configs' own checks before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxlab.engine import L2, MODEL, OPTIMIZER
from jaxlab.errors import ConfigError
from jaxlab.models import MODELS
from jaxlab.train import TrainConfig

TRAIN_STATIC = ("model", "loss", "optimizer", "batch_size", "input_layer", "fused_update")
TRAIN_STATIC += ("scan_epoch", "eval_batch_size")


def normalize_grid(grid: Mapping[str, Any]) -> dict[str, list]:
    """The grid with every axis a list of plain Python values (numpy arrays accepted), lists
    as tuples; no empty axis, None or repeated value."""
    out = {}
    for name, values in grid.items():
        if isinstance(values, np.ndarray):
            values = values.tolist()
        if isinstance(values, str) or not isinstance(values, Sequence) or len(values) == 0:
            raise ConfigError(f"grid axis {name!r} needs a non-empty list of values")
        values = [v.item() if isinstance(v, np.generic) else v for v in values]
        values = [tuple(v) if isinstance(v, list) else v for v in values]
        if any(v is None for v in values):
            raise ConfigError(
                f"grid axis {name!r} has None; leave the axis out to use the default value"
            )
        if len(set(values)) != len(values):
            raise ConfigError(f"grid axis {name!r} repeats a value: {values}")
        out[name] = values
    return out


def _kind(config: TrainConfig, name: str, values: list) -> tuple[str, str]:
    """``(kind, field)`` of a grid axis for this group's config: kind is ``train`` (static),
    ``l2``, ``optimizer``, ``model_float``, ``model_choice`` or ``model_static``."""
    if name in TRAIN_STATIC:
        return "train", name
    if name == "l2":
        return "l2", name
    spec = MODELS.get(config.model)
    model_names = set(config.model_hyperparameters())
    optimizer_names = set(config.hyperparameters()) | {"learning_rate"}
    field = name.split(".", 1)[1] if name.startswith(("model.", "optimizer.")) else name
    in_model = field in model_names and not name.startswith("optimizer.")
    in_optimizer = field in optimizer_names and not name.startswith("model.")
    if in_model and in_optimizer:
        raise ConfigError(
            f"grid axis {name!r} is a hyperparameter of both model {config.model!r} and "
            f"optimizer {config.optimizer!r}; name it 'model.{field}' or 'optimizer.{field}'"
        )
    if in_optimizer:
        return "optimizer", field
    if not in_model:
        sweepable = sorted({*TRAIN_STATIC, "l2", *model_names, *optimizer_names})
        raise ConfigError(
            f"unknown grid axis {name!r} for model {config.model!r} and optimizer "
            f"{config.optimizer!r}; sweepable: {', '.join(sweepable)}"
        )
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numbers and any(isinstance(v, float) for v in values):
        return "model_float", field
    if field in spec.choices and all(isinstance(v, str) for v in values):
        return "model_choice", field
    return "model_static", field


def _with(config: TrainConfig, kind: str, field: str, value: Any) -> TrainConfig:
    """``config`` with one axis's value (validated by the config's own checks)."""
    if kind == "train" or kind == "l2":
        return dataclasses.replace(config, **{field: value})
    if kind == "optimizer" and field == "learning_rate":
        return dataclasses.replace(config, learning_rate=value)
    if kind == "optimizer":
        args = dict(config.optimizer_args) | {field: value}
        return dataclasses.replace(config, optimizer_args=args)
    return dataclasses.replace(config, model_args=dict(config.model_args) | {field: value})


@dataclasses.dataclass(frozen=True)
class Group:
    """One compiled group: its fixed axis values, config, and vmapped axes' kinds."""

    fixed: dict[str, Any]
    config: TrainConfig
    vmapped: dict[str, list]
    kinds: dict[str, tuple[str, str]]


def plan_groups(base: TrainConfig, grid: Mapping[str, Sequence]) -> list[Group]:
    """The sweep's compiled groups, every axis and value validated (ConfigError otherwise)."""
    grid = normalize_grid(grid)
    if "seed" in grid:
        raise ConfigError("seeds are given separately, not as a grid axis")
    train = [name for name in grid if name in TRAIN_STATIC]
    groups = []
    for values in itertools.product(*(grid[name] for name in train)):
        fixed = dict(zip(train, values, strict=True))
        config = base
        for name, value in fixed.items():
            config = _with(config, "train", name, value)
        kinds = {name: _kind(config, name, grid[name]) for name in grid if name not in train}
        static = [name for name, (kind, _) in kinds.items() if kind == "model_static"]
        for more in itertools.product(*(grid[name] for name in static)):
            group = config
            for name, value in zip(static, more, strict=True):
                group = _with(group, *kinds[name], value)
            vmapped = {name: grid[name] for name in kinds if name not in static}
            for name, axis in vmapped.items():
                for value in axis:
                    _with(group, *kinds[name], value)
            fixed_all = fixed | dict(zip(static, more, strict=True))
            groups.append(Group(fixed_all, group, vmapped, {n: kinds[n] for n in vmapped}))
    return groups


def check_grid(base: TrainConfig, grid: Mapping[str, Sequence], seeds: Sequence[int]) -> None:
    """Every axis known, non-empty and valid, seeds distinct; raises ConfigError otherwise."""
    if len(seeds) == 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a non-empty list without repeats, got {list(seeds)}")
    plan_groups(base, grid)


def hyperparameters_of(group: Group, seeds: Sequence[int]) -> tuple[np.ndarray, dict]:
    """The group's models (the product of its vmapped axes, seeds varying fastest): their seeds
    and per-model hyperparameters (``engine.Program``'s keys)."""
    combos = list(itertools.product(*group.vmapped.values(), seeds))
    columns = {name: [combo[i] for combo in combos] for i, name in enumerate(group.vmapped)}
    by_field = {group.kinds[name]: column for name, column in columns.items()}
    count = len(combos)
    hyper = {}
    for name, default in group.config.hyperparameters().items():
        column = by_field.get(("optimizer", name), [default] * count)
        hyper[OPTIMIZER + name] = np.asarray(column, np.float32)
    for (kind, field), column in by_field.items():
        if kind == "l2":
            hyper[L2] = np.asarray(column, np.float32)
        elif kind == "model_float":
            hyper[MODEL + field] = np.asarray(column, np.float32)
        elif kind == "model_choice":
            options = group.vmapped[name_of(group, kind, field)]
            hyper[MODEL + field] = np.asarray([options.index(v) for v in column], np.int32)
    return np.asarray([combo[-1] for combo in combos]), hyper


def name_of(group: Group, kind: str, field: str) -> str:
    return next(name for name, k in group.kinds.items() if k == (kind, field))
