"""The headline experiment: the lesson's model trained over seeds x kernel initializers, all
models in one compiled program, showing the overfitting curves as bands over seeds.

    python experiments/imdb_overfitting.py                  # 8 seeds x 4 initializers
    python experiments/imdb_overfitting.py --seeds 3 --inits glorot_uniform,he_normal

Writes histories (npz + tidy csv), a summary table and bands.png to a new folder under --out.
"""

from __future__ import annotations

import argparse
import time

from jaxlab import cli, distributed, plotting, results
from jaxlab.imdb import load_imdb_multi_hot
from jaxlab.sweep import run_sweep
from jaxlab.sweep_results import summary_table
from jaxlab.train import TrainConfig

DEFAULT_INITS = "glorot_uniform,he_normal,lecun_normal,normal_1"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="number of seeds (0..N-1)")
    parser.add_argument("--inits", default=DEFAULT_INITS, help="comma-separated initializers")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--optimizer", default="rmsprop")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument(
        "--data-order",
        choices=("shared", "per_model"),
        default="shared",
        help="shared: all models see the same batches; per_model: independent replicates",
    )
    parser.add_argument("--band", choices=("std", "minmax"), default="std")
    parser.add_argument("--limit", type=int, default=None, help="first N reviews per split")
    cli.add_data_args(parser)
    cli.add_run_args(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    if args.seeds < 1:
        raise cli.ConfigError(f"--seeds must be positive, got {args.seeds}")
    base = TrainConfig(
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        batch_size=args.batch_size,
    )
    grid = {"kernel_init": [name.strip() for name in args.inits.split(",") if name.strip()]}
    train, test = load_imdb_multi_hot(args.num_words, args.data_dir, args.limit)
    run_dir = cli.run_dir(args, "imdb_overfitting")
    start = time.perf_counter()

    def save(result) -> None:
        if not distributed.is_main():
            return
        result.save(run_dir)
        results.write_run_info(
            run_dir,
            experiment="imdb_overfitting",
            config=base,
            grid=grid,
            seeds=list(range(args.seeds)),
            data_order=args.data_order,
            wall_seconds=time.perf_counter() - start,
            progress=result.progress(),
            epoch_seconds=result.seconds,
        )

    result = run_sweep(
        base,
        grid,
        list(range(args.seeds)),
        train,
        test,
        data_order=args.data_order,
        verbose=not args.quiet,
        on_epoch_end=save,
        checkpoint_dir=run_dir / "checkpoints",
        checkpoint_every=args.checkpoint_every,
        resume=bool(args.resume),
    )
    save(result)
    if not distributed.is_main():
        return
    plotting.plot_bands(
        result.curves(),
        run_dir / "bands.png",
        band=args.band,
        title=f"IMDB, 16-16 relu, {args.optimizer}: {args.seeds} seeds per initializer",
    )
    table = summary_table(result)
    (run_dir / "summary.md").write_text(table + "\n")
    print(table)
    print(f"{len(result.seconds)} epochs in {sum(result.seconds):.1f} s; results in {run_dir}")


if __name__ == "__main__":
    cli.run(main, build_parser())
