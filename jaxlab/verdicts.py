"""Verdicts with uncertainty: is a lesson's claim borne out by a handful of seeds?

A claim names a *quantity* (a paired per-seed difference or ratio, a per-seed statistic such as
a Spearman correlation, or a deterministic measurement), a *direction* (``">"`` or ``"<"``) and
a *threshold*: the smallest effect that counts, with a one-line reason. The data give an
estimate and a 95% interval:

- ``"paired t"`` / ``"one-sample t"``: the mean of per-seed values (for a paired test, the
  difference or ratio of two configs trained from the same seeds on the same batches) with a
  Student t interval, ``mean ± t(0.975, n-1) * sd / sqrt(n)`` (quantiles from a table, no SciPy);
- ``"deterministic"``: a measurement that does not depend on the seed (interval = the value).

The verdict: ``holds`` if the whole interval is beyond the threshold in the claimed direction;
``does not hold`` if the whole interval is on the other side (the effect that counts is ruled
out: reversed, absent or too small); ``inconclusive`` if the interval straddles the threshold,
with the number of seeds that would settle it at the observed spread.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
DIRECTIONS = (">", "<")
DETERMINISTIC = "deterministic (does not vary with the seed)"
MAX_SEEDS = 1000  # beyond this, "seeds needed" is reported as unknown

# Student t's 0.975 quantile for 1..30 degrees of freedom (two-sided 95%).
T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
Z975 = 1.959964


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One reading of a claim, judged: what was compared, how, and the result."""

    quantity: str
    direction: str
    threshold: float
    reason: str
    estimate: float
    low: float
    high: float
    seeds: int
    test: str
    verdict: str
    seeds_needed: int | None = None
    values: tuple[float, ...] = ()  # the per-seed values the interval came from
    reading: str = ""  # which reading of the claim this is, when it has several

    def as_json(self) -> dict[str, Any]:
        """The fields, ``low`` and ``high`` as ``interval``, in reading order."""
        out = {"reading": self.reading} if self.reading else {}
        for field in dataclasses.fields(self):
            if field.name in ("low", "high", "reading"):
                continue
            out[field.name] = getattr(self, field.name)
            if field.name == "estimate":
                out["interval"] = [self.low, self.high]
        out["values"] = list(self.values)
        return out


def t_quantile(df: int) -> float:
    """Student t's 0.975 quantile: a table up to 30 degrees of freedom, then the Cornish-Fisher
    expansion around the normal quantile (error below 1e-4)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def decide(direction: str, threshold: float, low: float, high: float) -> str:
    """``holds`` if [low, high] is wholly beyond ``threshold`` in ``direction``, ``does not
    hold`` if wholly on the other side, else ``inconclusive``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    beyond, short = (low > threshold, high < threshold)
    if direction == "<":
        beyond, short = high < threshold, low > threshold
    return HOLDS if beyond else FAILS if short else INCONCLUSIVE


def seeds_needed(sd: float, gap: float, seeds: int) -> int | None:
    """The fewest seeds (more than ``seeds``) whose t interval, at spread ``sd``, is narrower
    than ``gap``, the distance from the estimate to the threshold; None if more than
    :data:`MAX_SEEDS` (or no spread is known)."""
    if not (np.isfinite(sd) and gap > 0):
        return None
    for n in range(max(seeds + 1, 2), MAX_SEEDS + 1):
        if t_quantile(n - 1) * sd / np.sqrt(n) < gap:
            return n
    return None


def _finite(values) -> np.ndarray:
    values = np.asarray(values, float).ravel()
    return values[np.isfinite(values)]


def _verdict(quantity, direction, threshold, reason, test, estimate, low, high, n, sd, values):
    verdict = decide(direction, threshold, low, high) if n else INCONCLUSIVE
    needed = None
    if verdict == INCONCLUSIVE and n >= 2:
        needed = seeds_needed(sd, abs(estimate - threshold), n)
    return Verdict(
        quantity, direction, float(threshold), reason, float(estimate), float(low), float(high),
        int(n), test, verdict, needed, tuple(float(v) for v in values),
    )  # fmt: skip


def one_sample(
    quantity: str,
    values,
    direction: str,
    threshold: float,
    reason: str,
    test: str = "one-sample t",
    bounds: tuple[float, float] = (-np.inf, np.inf),
) -> Verdict:
    """The mean of per-seed ``values`` (non-finite ones, e.g. of diverged seeds, are left out)
    with a t interval, against ``threshold``; the interval is clipped to ``bounds``, the values
    a bounded quantity (a correlation, a fraction) can take."""
    values = _finite(values)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    if n < 2:  # one value gives no interval
        return _verdict(
            quantity, direction, threshold, reason, test, mean, -np.inf, np.inf, n, np.nan, values
        )
    sd = float(values.std(ddof=1))
    half = t_quantile(n - 1) * sd / np.sqrt(n)
    low, high = max(mean - half, bounds[0]), min(mean + half, bounds[1])
    return _verdict(quantity, direction, threshold, reason, test, mean, low, high, n, sd, values)


def paired(
    quantity: str, a, b, direction: str, threshold: float, reason: str, ratio: bool = False
) -> Verdict:
    """Per seed ``a - b`` (or ``a / b``), seeds paired by position; a pair with a non-finite
    side is left out."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    per_seed = a[keep] / b[keep] if ratio else a[keep] - b[keep]
    test = "paired t (ratio)" if ratio else "paired t"
    return one_sample(quantity, per_seed, direction, threshold, reason, test)


def deterministic(
    quantity: str, value: float, direction: str, threshold: float, reason: str
) -> Verdict:
    """A measurement that does not vary with the seed: its interval is the value itself."""
    return _verdict(
        quantity, direction, threshold, reason, DETERMINISTIC, value, value, value, 1, 0.0,
        [value],
    )  # fmt: skip


def number(value: float) -> str:
    """A compact number for tables: 4 significant digits (``nan``, ``+inf``, ``-inf``)."""
    return f"{value:+g}" if np.isinf(value) else f"{value:.4g}"


def describe(test: dict[str, Any]) -> str:
    """One line: quantity, estimate [interval], the claimed side of the threshold, the test."""
    low, high = test["interval"]
    label = f"{test['reading']}: " if test.get("reading") else ""
    interval = "" if test["test"] == DETERMINISTIC else f" [{number(low)}, {number(high)}]"
    seeds = f", {test['seeds']} seed{'s' if test['seeds'] != 1 else ''}"
    return (
        f"{label}{test['quantity']} = {number(test['estimate'])}{interval}; claim "
        f"{test['direction']} {number(test['threshold'])} ({test['reason']}); {test['test']}"
        + ("" if test["test"] == DETERMINISTIC else seeds)
    )


def brief(test: dict[str, Any]) -> str:
    """A reading in a few words: its label, estimate [interval] and verdict."""
    low, high = test["interval"]
    return (
        f"{test.get('reading') or test['quantity']}: {number(test['estimate'])} "
        f"[{number(low)}, {number(high)}], {test['verdict']}"
    )


def explain(test: dict[str, Any]) -> str:
    """Why a reading does not hold or is inconclusive, from its interval and threshold."""
    low, high = (number(v) for v in test["interval"])
    threshold, side = number(test["threshold"]), test["direction"]
    if test["verdict"] == FAILS:
        return (
            f"The 95% interval [{low}, {high}] lies wholly on the wrong side of {threshold}: "
            f"an effect of the size that counts ({side} {threshold}) is ruled out."
        )
    if test["verdict"] != INCONCLUSIVE:
        return ""
    if test["seeds"] == 0:
        return "Nothing to compare: no seed gave a value."
    if test["seeds"] == 1:
        return "One seed gives no interval: rerun with more seeds."
    needed = test.get("seeds_needed")
    settle = (
        f"about {needed} seeds would settle it at the observed spread"
        if needed
        else f"the estimate sits on the threshold: more than {MAX_SEEDS} seeds, or none, "
        "would settle it"
    )
    return f"The 95% interval [{low}, {high}] straddles {threshold}: {settle}."


def mark(verdict: str) -> str:
    """A verdict for Markdown: ``holds``, ``**does not hold**`` or ``*inconclusive*``."""
    return {HOLDS: "holds", FAILS: "**does not hold**", INCONCLUSIVE: "*inconclusive*"}[verdict]


def verdict_of(claim: dict[str, Any]) -> str:
    """A saved claim's verdict; a ``claims.json`` from before verdicts had only ``holds``."""
    return claim.get("verdict") or (HOLDS if claim["holds"] else FAILS)


def claim_rows(claims: list[dict[str, Any]], technique: bool = True) -> list[str]:
    """Markdown table rows (header first) for claims as saved in ``claims.json``: evidence, the
    test of the reading the lesson means and the other readings, the verdict and why."""
    columns = ["technique"] * technique + ["claim", "evidence", "test", "verdict"]
    lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    for c in claims:
        test = "<br>".join(
            [describe(c) if "quantity" in c else "no test recorded (an older run)"]
            + [f"other reading, {brief(r)}" for r in c.get("readings", [])]
            + ([f"the lesson means: {c['meaning']}"] if c.get("meaning") else [])
        )
        verdict = mark(verdict_of(c)) + (f": {c['explanation']}" if c.get("explanation") else "")
        cells = [c["technique"]] * technique + [c["statement"], c["evidence"], test, verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
