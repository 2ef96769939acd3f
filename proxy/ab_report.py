"""The A/B report between two variants (version labels) on an online metric: pure functions over the
per-version counts of proxy/online_metrics.py.

The test: a two-sided two-proportion z-test (pooled standard error) at ALPHA; the interval: Newcombe's hybrid
score interval (Wilson intervals of each arm, Newcombe 1998, method 10) for the difference of the rates,
at 1 - ALPHA. A variant is the winner when p < ALPHA and the interval leaves out 0.

"Not enough data" when either arm has fewer than MIN_REQUESTS requests or fewer than MIN_OUTCOMES successes or
failures (the normal approximation the z-test rests on needs both counts well above zero)."""

import math
from dataclasses import asdict, dataclass

from scipy.stats import norm

ALPHA = 0.05
MIN_REQUESTS = 100
MIN_OUTCOMES = 10
METRICS = {"ctr": "clicks", "conversion": "conversions"}  # online metric -> its success count
VARIANTS = ("stable", "canary")  # models.config's version labels: the API's split (--canary-share)
NOT_ENOUGH_DATA = "not enough data"
NO_DIFFERENCE = "no significant difference"


@dataclass(frozen=True)
class Arm:
    variant: str
    versions: tuple[str, ...]
    requests: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class ABReport:
    metric: str
    a: Arm
    b: Arm
    verdict: str  # the winner's variant, NOT_ENOUGH_DATA or NO_DIFFERENCE
    winner: str | None
    difference: float | None  # b's rate - a's rate
    interval: tuple[float, float] | None  # of the difference, at `confidence`
    p_value: float | None
    confidence: float
    test: str
    rule: str

    def as_dict(self) -> dict:
        return asdict(self)


TEST = (
    f"two-sided two-proportion z-test (pooled), alpha {ALPHA}; "
    f"Newcombe hybrid score interval of the difference, {1 - ALPHA:.0%}"
)
RULE = (
    f"each variant needs at least {MIN_REQUESTS} requests and at least {MIN_OUTCOMES} successes and "
    f"{MIN_OUTCOMES} failures"
)


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval of a proportion."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def newcombe(a: Arm, b: Arm, z: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval of b.rate - a.rate."""
    la, ua = wilson(a.successes, a.requests, z)
    lb, ub = wilson(b.successes, b.requests, z)
    d = b.rate - a.rate
    return (
        d - math.sqrt((b.rate - lb) ** 2 + (ua - a.rate) ** 2),
        d + math.sqrt((ub - b.rate) ** 2 + (a.rate - la) ** 2),
    )


def z_test(a: Arm, b: Arm) -> float:
    """The two-sided p-value of 'the two rates are equal'."""
    pooled = (a.successes + b.successes) / (a.requests + b.requests)
    se = math.sqrt(pooled * (1 - pooled) * (1 / a.requests + 1 / b.requests))
    if se == 0:
        return 1.0
    return float(2 * norm.sf(abs(b.rate - a.rate) / se))


def enough(arm: Arm) -> bool:
    return (
        arm.requests >= MIN_REQUESTS
        and arm.successes >= MIN_OUTCOMES
        and arm.requests - arm.successes >= MIN_OUTCOMES
    )


def arms(rows: list, metric: str) -> dict[str, Arm]:
    """Per variant, the requests and successes of `metric` over its versions (rows: VersionMetrics)."""
    count = METRICS[metric]
    out = {}
    for row in rows:
        arm = out.get(row.variant) or Arm(row.variant, (), 0, 0)
        out[row.variant] = Arm(
            row.variant,
            arm.versions + (row.model_version,),
            arm.requests + row.requests,
            arm.successes + getattr(row, count),
        )
    return out


def compare(a: Arm, b: Arm, metric: str = "ctr") -> ABReport:
    """The report of b against a."""
    z = float(norm.ppf(1 - ALPHA / 2))
    common = dict(metric=metric, a=a, b=b, confidence=1 - ALPHA, test=TEST, rule=RULE)
    if not (enough(a) and enough(b)):
        return ABReport(
            **common, verdict=NOT_ENOUGH_DATA, winner=None, difference=None, interval=None, p_value=None
        )
    p, interval = z_test(a, b), newcombe(a, b, z)
    significant = p < ALPHA and (interval[0] > 0 or interval[1] < 0)
    winner = (b if b.rate > a.rate else a).variant if significant else None
    return ABReport(
        **common,
        verdict=winner if winner is not None else NO_DIFFERENCE,
        winner=winner,
        difference=b.rate - a.rate,
        interval=interval,
        p_value=p,
    )


def report(rows: list, variants: tuple[str, str] = VARIANTS, metric: str = "ctr") -> ABReport:
    """The A/B report of variants[1] against variants[0] from VersionMetrics rows."""
    if metric not in METRICS:
        raise ValueError(f"metric: {metric!r} is not one of {', '.join(METRICS)}")
    by_variant = arms(rows, metric)
    a, b = (by_variant.get(v) or Arm(v, (), 0, 0) for v in variants)
    return compare(a, b, metric)


def describe(r: ABReport) -> str:
    """One paragraph for people."""
    arms_text = "; ".join(
        f"{arm.variant or '(no label)'} (versions {', '.join(arm.versions) or 'none'}): "
        f"{arm.successes}/{arm.requests} = {arm.rate:.4f}"
        for arm in (r.a, r.b)
    )
    if r.verdict == NOT_ENOUGH_DATA and not (r.a.requests or r.b.requests):
        return (
            f"A/B on {r.metric}: {NOT_ENOUGH_DATA}: no answers from the variants {r.a.variant} and "
            f"{r.b.variant} in the window (they are TF Serving version labels: "
            "`recsys serve --backend ... --canary-share`)."
        )
    if r.verdict == NOT_ENOUGH_DATA:
        return f"A/B on {r.metric}: {NOT_ENOUGH_DATA} ({r.rule}). {arms_text}."
    low, high = r.interval
    head = f"winner {r.winner}" if r.winner else NO_DIFFERENCE
    return (
        f"A/B on {r.metric}: {head}. {arms_text}. "
        f"Difference {r.b.variant} - {r.a.variant} = {r.difference:+.4f}, "
        f"{r.confidence:.0%} interval [{low:+.4f}, {high:+.4f}], p = {r.p_value:.3g} ({r.test})."
    )
