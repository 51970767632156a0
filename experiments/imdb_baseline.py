"""The lesson's IMDB program: Dense(16, relu) -> Dense(16, relu) -> Dense(1, sigmoid), RMSprop,
20 epochs of batch 512 validated on the test set, then the loss | accuracy figure.

    python experiments/imdb_baseline.py                 # seed 0
    python experiments/imdb_baseline.py --seed 0,1,2,3,4

Writes history-seed<N>.json, curves-seed<N>.png and run.json (config, versions, device, wall
time, peak memory) to a new folder under --out, and prints a table of the lesson's numbers.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np

import jaxlab
from jaxlab import cli, distributed, plotting, results
from jaxlab.layers import INPUT_LAYERS
from jaxlab.models import summary
from jaxlab.sweep import input_layer_used
from jaxlab.sweep_results import divergence_note
from jaxlab.train import TrainConfig, fit


def parse_hidden(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(width) for width in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 16,16, got {text!r}") from None


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(seed) for seed in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0 or 0,1,2, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"repeated seed in {text!r}")
    return seeds


def lesson_numbers(history: dict) -> dict:
    """The numbers the lesson's figure is read for; for a model that diverged, only when and
    why (its other numbers are not results)."""
    seconds = float(np.median(history["seconds"][1:] or history["seconds"]))
    if "diverged_epoch" in history:
        epoch = history["diverged_epoch"]
        note = divergence_note(history, epoch)
        return {"diverged_epoch": epoch + 1, "diverged": note, "median_epoch_seconds": seconds}
    best, peak = int(np.argmin(history["val_loss"])), int(np.argmax(history["val_accuracy"]))
    return {
        "min_val_loss": history["val_loss"][best],
        "epoch_min_val_loss": best + 1,
        "peak_val_accuracy": history["val_accuracy"][peak],
        "epoch_peak_val_accuracy": peak + 1,
        "final_accuracy": history["accuracy"][-1],
        "final_val_loss": history["val_loss"][-1],
        "final_val_accuracy": history["val_accuracy"][-1],
        "median_epoch_seconds": seconds,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seed", type=parse_seeds, default=[0], help="seed or comma-separated seeds (0,1,2)"
    )
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument(
        "--batch-size", type=int, default=512, help=">= 25000 means full-batch training"
    )
    parser.add_argument("--optimizer", default="rmsprop", help="a registered optimizer name")
    parser.add_argument(
        "--learning-rate", type=float, default=None, help="default: the optimizer's"
    )
    parser.add_argument("--hidden", type=parse_hidden, default=(16, 16), help="e.g. 16,16")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--kernel-init", default="glorot_uniform")
    parser.add_argument("--l2", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument(
        "--input-layer",
        choices=INPUT_LAYERS,
        default="auto",
        help="first layer: compiled kernel (ffi, CPU), gathered rows (sparse) or one-hot matmul "
        "(dense); auto picks the fastest measured here",
    )
    parser.add_argument(
        "--train-size", type=int, default=None, help="use only the first N reviews of each split"
    )
    cli.add_data_args(parser)
    cli.add_run_args(parser)
    return parser


def main(args: argparse.Namespace) -> None:
    config = TrainConfig(
        model="mlp",
        model_args={
            "hidden": args.hidden,
            "activation": args.activation,
            "kernel_init": args.kernel_init,
            "dropout": args.dropout,
        },
        optimizer=args.optimizer,
        learning_rate=args.learning_rate,
        epochs=args.epochs,
        batch_size=args.batch_size,
        l2=args.l2,
        input_layer=args.input_layer,
    )
    (train_data, train_labels), (test_data, test_labels) = jaxlab.load_imdb(
        num_words=args.num_words, data_dir=args.data_dir
    )
    if args.train_size is not None:
        if args.train_size < 1:
            raise jaxlab.ConfigError(f"--train-size must be positive, got {args.train_size}")
        rows = np.arange(min(args.train_size, len(train_data)))
        train_data, train_labels = train_data.take(rows), train_labels[rows]
        test_data, test_labels = test_data.take(rows), test_labels[rows]
    index_word = jaxlab.index_to_word(jaxlab.get_word_index(data_dir=args.data_dir))
    print("train_data[0][:20] =", train_data[0][:20].tolist())
    print("train_labels[0] =", int(train_labels[0]))
    print("index_word[1] =", repr(index_word[1]), " index_word[25] =", repr(index_word[25]))
    print("decoded review 0:", jaxlab.decode_review(train_data[0], index_word)[:300], "...")
    x_train = jaxlab.sparse_multi_hot(train_data, args.num_words)
    x_test = jaxlab.sparse_multi_hot(test_data, args.num_words)

    run_dir = cli.run_dir(args, "imdb_baseline")
    layer = input_layer_used(config)  # what --input-layer auto becomes here
    main_process = distributed.is_main()
    start = time.perf_counter()
    rows = {}
    for seed in args.seed:

        def save(epoch: int, history: dict, state=None, seed=seed) -> None:
            if not main_process:
                return
            results.write_json(run_dir / f"history-seed{seed}.json", history)
            results.write_run_info(
                run_dir,
                experiment="imdb_baseline",
                config=config,
                seeds=args.seed,
                seeds_done=list(rows),
                input_layer_used=layer,
                wall_seconds=time.perf_counter() - start,
                peak_rss_mib=peak_rss_mib(),
            )

        history, state = fit(
            config,
            (x_train, train_labels.astype(np.float32)),
            (x_test, test_labels.astype(np.float32)),
            seed=seed,
            verbose=not args.quiet,
            on_epoch_end=save,
            checkpoint_dir=run_dir / "checkpoints" / f"seed{seed}",
            checkpoint_every=args.checkpoint_every,
            resume=bool(args.resume),
        )
        if seed == args.seed[0] and main_process:
            print(summary(state.params))
        if main_process:
            plotting.plot_history(history, run_dir / f"curves-seed{seed}.png")
        rows[seed] = lesson_numbers(history)
        save(config.epochs - 1, history)
    table = numbers_table(rows)
    if main_process:
        (run_dir / "summary.md").write_text(table + "\n")
        print(table)
        print(f"peak memory {peak_rss_mib():.0f} MiB; results in {run_dir}")
    diverged = [
        f"seed {seed} diverged at epoch {r['diverged_epoch']} ({r['diverged']})"
        for seed, r in rows.items()
        if "diverged" in r
    ]
    if diverged:
        smaller = "--learning-rate or --l2" if args.l2 else "--learning-rate"
        raise SystemExit(f"imdb_baseline.py: {'; '.join(diverged)}; try a smaller {smaller}")


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def numbers_table(rows: dict[int, dict]) -> str:
    header = (
        "| seed | min val_loss (epoch) | peak val_accuracy (epoch) | epoch-N train accuracy "
        "| epoch-N val_loss / val_accuracy | s per epoch |"
    )
    lines = [header, "|---|---|---|---|---|---|"]
    for seed, r in rows.items():
        if "diverged" in r:
            lines.append(
                f"| {seed} | diverged at epoch {r['diverged_epoch']} ({r['diverged']}) "
                f"| - | - | - | {r['median_epoch_seconds']:.3f} |"
            )
            continue
        lines.append(
            f"| {seed} | {r['min_val_loss']:.4f} ({r['epoch_min_val_loss']}) "
            f"| {r['peak_val_accuracy']:.4f} ({r['epoch_peak_val_accuracy']}) "
            f"| {r['final_accuracy']:.4f} "
            f"| {r['final_val_loss']:.4f} / {r['final_val_accuracy']:.4f} "
            f"| {r['median_epoch_seconds']:.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main, build_parser())
