"""The lesson report: runs every lesson script (or reads their runs) and writes one Markdown
report with every figure, summary and claims table, and one table of all verdicts.

Every verdict is read from the scripts' ``claims.json``; nothing in the report is written by
hand. Scripts run one after another into ``--out``; a script whose run there already finished
(its ``claims.json`` exists) is not run again, so an interrupted suite resumes where it stopped.

    python experiments/lesson_report.py --out docs/lesson-report    # all of them, ~40 min
    python experiments/lesson_report.py --out /tmp/suite --quick     # a smoke run
    python experiments/lesson_report.py --out docs/lesson-report --only lesson_scaling
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from jaxlab import cli, results, verdicts  # noqa: E402
from jaxlab.errors import ConfigError  # noqa: E402

# In the lesson's order. lesson_overfitting reuses lesson_capacity's networks when it can.
SCRIPTS = [
    "lesson_batch_size",
    "lesson_scaling",
    "lesson_learning_rate",
    "lesson_capacity",
    "lesson_activations",
    "lesson_initialization",
    "lesson_optimizers",
    "lesson_overfitting",
]


def build_parser() -> argparse.ArgumentParser:
    out = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    out.add_argument("--out", default="results/lesson-report", help="folder for runs and report")
    out.add_argument("--only", default=None, help="comma-separated script names (default: all)")
    out.add_argument("--quick", action="store_true", help="run every script in quick mode")
    out.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds for the scripts it runs (default: each script's, 5); e.g. more for the "
        "scripts whose verdicts were inconclusive, after removing their runs from --out",
    )
    out.add_argument("--data-dir", default=None, help="TFDS data dir holding imdb_reviews")
    out.add_argument("--report-only", action="store_true", help="write the report, run nothing")
    out.add_argument("--quiet", action="store_true", help="no progress bars")
    return out


def finished_run(out: Path, name: str) -> Path | None:
    """The latest complete run of ``name`` under ``out`` (it wrote its claims)."""
    runs = sorted(p.parent for p in out.glob(f"{name}-*/claims.json"))
    runs = [run for run in runs if results.run_status(run) == "complete"]
    return runs[-1] if runs else None


def run_script(name: str, args: argparse.Namespace, out: Path) -> None:
    command = [sys.executable, str(HERE / f"{name}.py"), "--out", str(out)]
    if args.quick:
        command.append("--quick")
    if args.quiet:
        command.append("--quiet")
    if args.seeds is not None:
        command += ["--seeds", str(args.seeds)]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    capacity = finished_run(out, "lesson_capacity")
    if name == "lesson_overfitting" and capacity is not None:
        command += ["--capacity-from", str(capacity / "capacity")]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, env=os.environ.copy())
    if done.returncode != 0:
        raise ConfigError(f"{name} failed (exit {done.returncode}); its output is above")
    print(f"== {name}: {time.perf_counter() - started:.0f} s", flush=True)


def first_paragraph(name: str) -> str:
    source = (HERE / f"{name}.py").read_text()
    docstring = source.split('"""')[1]
    return " ".join(docstring.split("\n\n")[0].split())


def lesson_claim(name: str) -> str:
    source = (HERE / f"{name}.py").read_text()
    paragraphs = source.split('"""')[1].split("\n\n")
    return " ".join(paragraphs[1].split()) if len(paragraphs) > 1 else ""


def verdict(claim: dict) -> str:
    return verdicts.mark(verdicts.verdict_of(claim))


def interval(claim: dict) -> str:
    """The judged reading's estimate [95% interval] against its threshold, in a few words."""
    if "quantity" not in claim:
        return "no test recorded (an older run)"
    low, high = (verdicts.number(v) for v in claim["interval"])
    how = "deterministic" if claim["test"] == verdicts.DETERMINISTIC else f"{claim['seeds']} seeds"
    return (
        f"{verdicts.number(claim['estimate'])} [{low}, {high}], claim {claim['direction']} "
        f"{verdicts.number(claim['threshold'])}; {how}"
    )


HOW = (
    "How a verdict is made: each claim names the quantity it compares (per seed, between "
    "configs trained from the same seeds on the same batches), the side of a threshold the "
    "lesson puts it on, and that threshold: the smallest effect that counts, with its reason. "
    "The estimate comes with a 95% Student t interval over seeds (paired, or one-sample on a "
    "per-seed statistic; see the test column). A claim **holds** if the whole "
    "interval is beyond the threshold, **does not hold** if the whole interval is on the other "
    "side, and is *inconclusive* if it straddles it (with the seeds that would settle it). "
    "Seeds differ in their initialization only: the batches come in the same order."
)


def section(name: str, run: Path, out: Path) -> tuple[str, list[dict], dict]:
    info = json.loads((run / "run.json").read_text())
    claims = json.loads((run / "claims.json").read_text())
    relative = run.relative_to(out)
    lines = [
        f"## {claims[0]['technique'] if claims else name}",
        "",
        first_paragraph(name),
        "",
        lesson_claim(name),
        "",
        f"`experiments/{name}.py`: {len(info['seeds'])} seeds, "
        f"{info['wall_seconds'] / 60:.1f} min ([run folder]({relative}))"
        + (" — quick mode, not evidence" if info.get("quick") else ""),
        "",
    ]
    # Overview figures first, then the bands of each sweep.
    for figure in sorted(run.glob("*.png"), key=lambda f: (f.name.startswith("bands"), f.name)):
        lines += [f"![{figure.stem}]({relative / figure.name})", ""]
    lines += [(run / "summary.md").read_text().strip(), ""]
    lines += verdicts.claim_rows(claims, technique=False)
    return "\n".join(lines) + "\n", claims, info


def write_report(out: Path, names: list[str]) -> Path:
    sections, all_claims, infos = [], [], []
    for name in names:
        run = finished_run(out, name)
        if run is None:
            sections.append(f"## {name}\n\nNot run yet: no finished run of it in `{out}`.\n")
            continue
        text, claims, info = section(name, run, out)
        sections.append(text)
        all_claims += claims
        infos.append((name, info))
    held = sum(c["holds"] for c in all_claims)
    counts = {v: sum(verdicts.verdict_of(c) == v for c in all_claims) for v in verdicts.VERDICTS}
    total_minutes = sum(info["wall_seconds"] for _, info in infos) / 60
    environment = infos[0][1]["environment"] if infos else {}
    jax_version = environment.get("versions", {}).get("jax")
    head = [
        "# The lesson, checked on IMDB",
        "",
        "Generated by `experiments/lesson_report.py` from the runs in this folder; every "
        "verdict is computed by the scripts from their results.",
        "",
        f"Machine: {environment.get('machine', '?')}, backend {environment.get('backend', '?')} "
        f"({environment.get('device_kind', '?')}); jax {jax_version}.",
        "",
        f"{held} of {len(all_claims)} claims hold ({counts[verdicts.FAILS]} do not hold, "
        f"{counts[verdicts.INCONCLUSIVE]} inconclusive). Time: {total_minutes:.1f} min in all ("
        + ", ".join(f"{name} {info['wall_seconds'] / 60:.1f}" for name, info in infos)
        + ").",
        "",
        HOW,
        "",
        "| technique | claim | verdict | estimate [95% interval] |",
        "|---|---|---|---|",
        *(
            f"| {c['technique']} | {c['statement']} | {verdict(c)} | {interval(c)} |"
            for c in all_claims
        ),
        "",
    ]
    if any(info.get("quick") for _, info in infos):
        head += [
            "Quick mode: too little data and too few epochs; these verdicts are not evidence.",
            "",
        ]
    path = out / "report.md"
    path.write_text("\n".join(head) + "\n" + "\n".join(sections))
    return path


def main(args: argparse.Namespace) -> None:
    names = SCRIPTS if args.only is None else args.only.split(",")
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        raise ConfigError(
            f"unknown lesson script(s) {', '.join(unknown)}; known: {', '.join(SCRIPTS)}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not args.report_only:
        for name in names:
            if finished_run(out, name) is None:
                run_script(name, args, out)
            else:
                print(f"== {name}: finished run found, not run again", flush=True)
    report = write_report(out, SCRIPTS)
    runs = {name: finished_run(out, name) for name in SCRIPTS}
    results.write_run_info(
        out,
        experiment="lesson_report",
        scripts={name: run.name if run else None for name, run in runs.items()},
        commits={name: _commit_of(run) for name, run in runs.items() if run},
        wall_seconds=time.perf_counter() - started,
    )
    print(f"report: {report}")


def _commit_of(run: Path) -> str | None:
    return json.loads((run / "run.json").read_text()).get("environment", {}).get("commit")


if __name__ == "__main__":
    cli.run(main, build_parser(), compilation_cache=False)
