"""jaxlab's case: M copies of the lesson's network trained at once by ``run_sweep``, with the
sparse, dense or ffi first layer (``TrainConfig.input_layer``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.options import Settings
from bench.probe import emit, load_sparse, peak_rss_mib

# The lesson's network (jaxlab's "mlp" model): 16 -> 16 -> 1, relu, glorot_uniform, no dropout.
LESSON_MODEL_ARGS = {"hidden": (16, 16), "activation": "relu", "kernel_init": "glorot_uniform"}


def jaxlab_config(s: Settings, formulation: str, epochs: int):
    """The ``TrainConfig`` of every model of the case: RMSprop, batch ``s.batch_size``, the
    warm-up epochs then ``epochs`` timed ones. The input width comes from the data."""
    from jaxlab.train import TrainConfig

    return TrainConfig(
        model="mlp",
        model_args=LESSON_MODEL_ARGS,
        optimizer="rmsprop",
        input_layer=formulation,
        epochs=s.warmup_epochs + epochs,
        batch_size=s.batch_size,
    )


def run_jaxlab_case(s: Settings, formulation: str, models: int, epochs: int) -> dict:
    from jax import monitoring

    from jaxlab.sweep import run_sweep

    compiling = [0.0]

    def on_duration(event: str, duration: float, **_: Any) -> None:
        if event.startswith("/jax/core/compile/"):  # tracing, lowering, XLA compilation
            compiling[0] += duration

    monitoring.register_event_duration_secs_listener(on_duration)
    train, validation = load_sparse(s)
    rss_data = peak_rss_mib()
    base = jaxlab_config(s, formulation, epochs)
    per_epoch_compile = []

    def on_epoch_end(result) -> None:
        per_epoch_compile.append(compiling[0] - sum(per_epoch_compile))
        emit("epoch", seconds=result.seconds[-1], peak_rss_mib=peak_rss_mib())

    start = time.perf_counter()
    result = run_sweep(
        base,
        {},
        list(range(models)),
        train,
        validation,
        verbose=False,
        on_epoch_end=on_epoch_end,
        check_memory=False,  # memory is measured here, not estimated beforehand
    )
    return {
        "epoch_seconds": result.seconds,
        "sweep_seconds": time.perf_counter() - start,
        "compile_s": compiling[0],
        "compile_s_in_timed_epochs": sum(per_epoch_compile[s.warmup_epochs :]),
        "val_accuracy": float(np.nanmean(result.histories["val_accuracy"][..., -1])),
        "rss_after_data_mib": rss_data,
    }
