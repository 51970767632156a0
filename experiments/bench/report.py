"""What a run records besides its cases (the machine, the code), the ratios between cases, and
the table and plot it writes."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from bench.options import INPUT_LAYERS, LABELS, PACKAGES
from jaxlab import results

REPO = Path(__file__).resolve().parents[2]


def code_version() -> dict:
    """The commit measured, and which of jaxlab's files differ from it (uncommitted edits)."""

    def git(*command: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *command], capture_output=True, text=True, cwd=REPO, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.rstrip() if done.returncode == 0 else None

    changed = git("status", "--porcelain", "--", "jaxlab")
    return {
        "commit": git("rev-parse", "HEAD"),
        "jaxlab_uncommitted": [line[3:] for line in changed.splitlines()] if changed else [],
    }


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine() -> dict:
    try:
        with open("/proc/meminfo") as f:
            memory = int(dict(line.split(":", 1) for line in f)["MemTotal"].split()[0]) / 2**20
    except (OSError, KeyError, ValueError):
        memory = None
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "memory_gib": memory,
        "python": platform.python_version(),
        "versions": versions,
        "jax_backend": results.environment()["backend"],
        "jax_devices": results.environment()["devices"],
    }


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_frameworks(frameworks: list[str]) -> dict[str, str]:
    """Framework -> why it cannot run here (not installed)."""
    missing = {}
    for name in frameworks:
        needs = ("keras", "tensorflow") if name.startswith("keras") else ("torch",)
        absent = [m for m in needs if not installed(m)]
        if absent:
            missing[name] = (
                f"{', '.join(absent)} not installed (pip install -e '.[bench]'); "
                f"skipping {LABELS[name]}"
            )
    return missing


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator and denominator else None


def add_ratios(cases: list[dict]) -> None:
    """``vs_keras``: Keras's ms per model-epoch / this case's (above 1: faster than Keras);
    ``vs_embedding_bag`` likewise against PyTorch's EmbeddingBag."""
    by_name = {c["implementation"]: c.get("ms_per_model_epoch") for c in cases if c["models"] == 1}
    for case in cases:
        own = case.get("ms_per_model_epoch")
        case["vs_keras"] = ratio(by_name.get("keras"), own)
        case["vs_embedding_bag"] = ratio(by_name.get("torch-bag"), own)


def fmt(value: float | None, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def table(cases: list[dict]) -> str:
    lines = [
        "| implementation | M | first epoch s | compile s | steady epoch s | ms per model-epoch "
        "| Keras ÷ this | EmbeddingBag ÷ this | peak RSS MiB | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        note = c.get("note", "") if c["status"] == "ok" else f"**{c['status']}**: {c['note']}"
        lines.append(
            f"| {c['label']} | {c['models']} | {fmt(c.get('first_epoch_s'), '.2f')} "
            f"| {fmt(c.get('compile_s'), '.1f')} | {fmt(c.get('steady_epoch_s'), '.3f')} "
            f"| {fmt(c.get('ms_per_model_epoch'), '.1f')} | {fmt(c.get('vs_keras'), '.1f', 'x')} "
            f"| {fmt(c.get('vs_embedding_bag'), '.1f', 'x')} | {fmt(c.get('peak_rss_mib'), '.0f')} "
            f"| {note} |"
        )
    return "\n".join(lines)


def plot(cases: list[dict], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    from jaxlab import plotting  # noqa: F401  (selects the Agg backend)

    fig, ax = plt.subplots(figsize=(7.5, 6))
    all_models = sorted({c["models"] for c in cases if "formulation" in c})
    for formulation, marker in zip(INPUT_LAYERS, ("o", "s", "^"), strict=False):
        mine = [c for c in cases if c.get("formulation") == formulation]
        points = [(c["models"], c["ms_per_model_epoch"]) for c in mine if "ms_per_model_epoch" in c]
        missing = [f"M={c['models']} {c['status']}" for c in mine if c["status"] != "ok"]
        label = f"jaxlab {formulation}, M models at once"
        if missing:
            label += f" ({', '.join(missing)})"
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, f"-{marker}", label=label)
    styles = {"keras": "r--", "keras-float64": "r:", "torch-dense": "g--", "torch-bag": "g-."}
    for c in cases:
        style = styles.get(c["implementation"])
        if style and "ms_per_model_epoch" in c:
            ax.axhline(
                c["ms_per_model_epoch"], color=style[0], linestyle=style[1:], label=c["label"]
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    if all_models:
        ax.set_xticks(all_models)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("models trained at once (M)")
    ax.set_ylabel("ms per model-epoch (train + validate)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    # Below the axes: the lines span the plot's whole height.
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
