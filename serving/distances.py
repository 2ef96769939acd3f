"""TFDV's distances between two categorical distributions, in pure Python: the API image has no TFDV, and
its skew check (proxy/skew.py) must measure as the pipeline's drift check (tfx_pipeline/components/drift.py,
TFDV's comparators) does. tests/test_skew.py checks both give the same numbers on the same counts.

Both take counts per value ({value: count}); a value missing on one side counts 0 there.
  l_infinity      max over values of |p(v) - q(v)|, p and q the counts normalised to sum 1
  jensen_shannon  (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2, logarithms to base 2 (0 .. 1)
"""

import math

DEFAULT_THRESHOLDS = {"l_infinity": 0.1, "jensen_shannon": 0.1}


def check_thresholds(thresholds: dict) -> dict:
    """The thresholds, or ValueError naming what is wrong."""
    for name, value in thresholds.items():
        if name not in DISTANCES:
            raise ValueError(f"drift threshold: {name!r} is not one of {', '.join(DISTANCES)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ValueError(f"drift threshold {name}: expected a number in (0, 1], got {value!r}")
    return dict(thresholds)


def _normalised(p: dict, q: dict) -> list[tuple[float, float]]:
    p_total, q_total = sum(p.values()), sum(q.values())
    if not p_total or not q_total:
        raise ValueError("a distribution with no counts has no distance")
    return [(p.get(v, 0) / p_total, q.get(v, 0) / q_total) for v in p.keys() | q.keys()]


def l_infinity(p: dict, q: dict) -> float:
    return max(abs(a - b) for a, b in _normalised(p, q))


def jensen_shannon(p: dict, q: dict) -> float:
    total = 0.0
    for a, b in _normalised(p, q):
        m = (a + b) / 2
        total += sum(x * math.log2(x / m) for x in (a, b) if x > 0) / 2
    return max(total, 0.0)


DISTANCES = {"l_infinity": l_infinity, "jensen_shannon": jensen_shannon}


def compare(current: dict[str, dict], reference: dict[str, dict], thresholds: dict) -> list[dict]:
    """The distances per feature present on both sides ({feature: {value: count}}), as drift.compare's:
    {"feature", "comparator", "distance", "threshold", "drift"}, sorted by feature and comparator."""
    found = []
    for feature in sorted(current.keys() & reference.keys()):
        if not sum(current[feature].values()) or not sum(reference[feature].values()):
            continue
        for name, threshold in sorted(thresholds.items()):
            distance = DISTANCES[name](current[feature], reference[feature])
            found.append(
                {
                    "feature": feature,
                    "comparator": name,
                    "distance": round(distance, 6),
                    "threshold": threshold,
                    "drift": distance > threshold,
                }
            )
    return found
