"""jaxlab: the model-training lesson as reproducible JAX experiments.

The public names below load on first use, so ``import jaxlab.cli`` (or any light module) does
not import JAX.
"""

import importlib

_EXPORTS = {
    "jaxlab.activations": ["ACTIVATIONS", "register_activation"],
    "jaxlab.encoding": ["SparseMultiHot", "multi_hot", "sparse_multi_hot"],
    "jaxlab.errors": ["ConfigError", "DataNotFoundError", "JaxlabError"],
    "jaxlab.imdb": [
        "decode_review",
        "get_word_index",
        "index_to_word",
        "load_imdb",
        "load_imdb_multi_hot",
        "load_imdb_tokens",
    ],
    "jaxlab.initializers": ["INITIALIZERS", "register_initializer"],
    "jaxlab.layers": ["BagDense"],
    "jaxlab.losses": ["LOSSES", "register_loss"],
    "jaxlab.models": ["MLP", "MODELS", "Choice", "pick", "register_model", "summary"],
    "jaxlab.optim": ["OPTIMIZERS", "make_optimizer", "optimizer_defaults", "register_optimizer"],
    "jaxlab.step": ["TrainState", "make_eval_step", "make_train_step"],
    "jaxlab.sweep": ["run_sweep"],
    "jaxlab.sweep_results": ["SweepResult", "summary_table"],
    "jaxlab.text": ["Sequences"],
    "jaxlab.train": ["FitResult", "TrainConfig", "fit", "run_keys"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'jaxlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
