"""The benchmark's constants, its command-line options and the settings every case shares."""

from __future__ import annotations

import argparse
import dataclasses

from jaxlab import cli
from jaxlab.errors import ConfigError

# jaxlab's first layers (TrainConfig.input_layer without "auto"), here without importing JAX.
INPUT_LAYERS = ("sparse", "dense", "ffi")
DEFAULT_MODELS = (1, 8, 64, 256)
FRAMEWORKS = ("keras", "torch-dense", "torch-bag")
QUICK = {"limit": 1000, "models": (1, 2), "warmup_epochs": 1, "epochs": 1}
ENV_RECORDED = ("KERAS_BACKEND", "OMP_WAIT_POLICY", "OMP_NUM_THREADS", "XLA_FLAGS")
PLAN_MARGIN = 1.25  # predicted seconds x this must fit --max-seconds
STOP_AFTER = 1.5  # a case still running at this x --max-seconds is stopped
MARK = "BENCHMARK"  # prefix of the JSON lines a case prints for the parent
PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "numpy",
    "keras",
    "tensorflow",
    "tensorflow-cpu",
    "torch",
)
LABELS = {
    "keras": "Keras (float32 multi-hot)",
    "keras-float64": "Keras (lesson's float64 vectorize)",
    "torch-dense": "PyTorch nn.Linear (dense multi-hot)",
    "torch-bag": "PyTorch nn.EmbeddingBag(sum)",
}


def parse_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 1,8,64, got {text!r}") from None
    if not values or min(values) < 1 or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected distinct positive integers, got {text!r}")
    return sorted(values)


def parse_names(allowed: tuple[str, ...]):
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if names == ["none"]:
            return []
        unknown = [n for n in names if n not in allowed]
        if unknown or len(set(names)) != len(names):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated subset of {','.join(allowed)} (or none), got {text!r}"
            )
        return names

    return parse


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    """The benchmark's options; ``description``: the entry point's docstring (its first
    paragraph is shown by --help)."""
    parser = argparse.ArgumentParser(
        description=description.split("\n\n")[0] if description else None
    )
    parser.add_argument(
        "--models",
        type=parse_ints,
        default=None,
        help="numbers of models trained at once (default: 1,8,64,256; quick: 1,2)",
    )
    parser.add_argument(
        "--formulations",
        type=parse_names(INPUT_LAYERS),
        default=list(INPUT_LAYERS),
        help="jaxlab first layers: sparse (gather + segment sum), dense (one-hot matmul), "
        "ffi (C++ kernel; needs a C++ compiler)",
    )
    parser.add_argument(
        "--frameworks",
        type=parse_names(FRAMEWORKS),
        default=list(FRAMEWORKS),
        help="comparisons to run if the bench extra is installed (default: all; none: skip)",
    )
    parser.add_argument(
        "--keras-float64",
        action="store_true",
        help="also run Keras on the lesson's exact float64 vectorize_sequences (its memory)",
    )
    parser.add_argument(
        "--warmup-epochs", type=int, default=None, help="untimed first epochs (default 1)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="timed epochs after the warm-up (default 3)"
    )
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=300.0,
        help="budget per case (default 300): a case predicted to exceed it (from the previous M, "
        f"with a {PLAN_MARGIN}x margin) runs fewer timed epochs (down to 1) or is skipped; a case "
        f"still running at {STOP_AFTER}x the budget is stopped (recorded: timeout)",
    )
    parser.add_argument(
        "--torch-threads", type=int, default=2, help="torch.set_num_threads (default 2)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N reviews per split")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run: {QUICK['limit']} reviews, M={','.join(map(str, QUICK['models']))}, "
        f"{QUICK['warmup_epochs']} warm-up + {QUICK['epochs']} timed epoch unless given "
        "(its numbers are not evidence)",
    )
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # one case, as JSON
    cli.add_data_args(parser)
    return parser


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every case shares. ``num_words`` is the vocabulary of the loaded reviews, and so
    the input width of every model (jaxlab's takes it from the data)."""

    data_dir: str | None
    num_words: int
    limit: int | None
    batch_size: int
    warmup_epochs: int
    epochs: int
    torch_threads: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        defaults = QUICK if args.quick else {"limit": None, "warmup_epochs": 1, "epochs": 3}
        limit, warmup, epochs = (
            defaults[name] if getattr(args, name) is None else getattr(args, name)
            for name in ("limit", "warmup_epochs", "epochs")
        )
        if warmup < 0 or epochs < 1:
            raise ConfigError(
                f"need --warmup-epochs >= 0 and --epochs >= 1, got {warmup}, {epochs}"
            )
        if args.batch_size < 1 or args.torch_threads < 1 or not args.max_seconds > 0:
            raise ConfigError("--batch-size, --torch-threads and --max-seconds must be positive")
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit must be positive, got {limit}")
        data_dir = str(args.data_dir) if args.data_dir is not None else None
        return cls(
            data_dir, args.num_words, limit, args.batch_size, warmup, epochs, args.torch_threads
        )
