"""jaxlab: the model-training lesson as reproducible JAX experiments."""

from jaxlab.activations import ACTIVATIONS, register_activation
from jaxlab.encoding import SparseMultiHot, multi_hot, sparse_multi_hot
from jaxlab.errors import ConfigError, DataNotFoundError, JaxlabError
from jaxlab.imdb import (
    decode_review,
    get_word_index,
    index_to_word,
    load_imdb,
    load_imdb_multi_hot,
)
from jaxlab.initializers import INITIALIZERS, register_initializer
from jaxlab.models import MLP, ModelConfig, init_params, summary
from jaxlab.optim import OPTIMIZERS, make_optimizer, optimizer_defaults, register_optimizer
from jaxlab.sweep import run_sweep
from jaxlab.sweep_results import SweepResult, summary_table
from jaxlab.text import Sequences
from jaxlab.train import TrainConfig, fit, run_keys

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "MLP",
    "OPTIMIZERS",
    "ConfigError",
    "DataNotFoundError",
    "JaxlabError",
    "ModelConfig",
    "Sequences",
    "SparseMultiHot",
    "SweepResult",
    "TrainConfig",
    "decode_review",
    "fit",
    "get_word_index",
    "index_to_word",
    "init_params",
    "load_imdb",
    "load_imdb_multi_hot",
    "make_optimizer",
    "multi_hot",
    "optimizer_defaults",
    "register_activation",
    "register_initializer",
    "register_optimizer",
    "run_keys",
    "run_sweep",
    "sparse_multi_hot",
    "summary",
    "summary_table",
]
