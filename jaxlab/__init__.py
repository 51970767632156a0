"""jaxlab: the model-training lesson as reproducible JAX experiments."""

from jaxlab.encoding import SparseMultiHot, multi_hot, sparse_multi_hot
from jaxlab.errors import ConfigError, DataNotFoundError, JaxlabError
from jaxlab.imdb import decode_review, get_word_index, index_to_word, load_imdb
from jaxlab.text import Sequences

__all__ = [
    "ConfigError",
    "DataNotFoundError",
    "JaxlabError",
    "Sequences",
    "SparseMultiHot",
    "decode_review",
    "get_word_index",
    "index_to_word",
    "load_imdb",
    "multi_hot",
    "sparse_multi_hot",
]
