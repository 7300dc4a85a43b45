"""Every comparison allocbench prints, computed one way: a ratio B/A with a 95%
interval and a verdict.  The report, `compare` and `advise` use this module
and nothing else computes a verdict.  Exact and distribution-free, so the
tests derive every interval from binomial and Mann-Whitney tails.

Two designs:
- paired (paired()): A and B ran in fresh processes taken in turns (A, B, A,
  B, ...), and the i-th of each shared the machine's mood.  The estimate is the
  median of the pair ratios b_i / a_i; the interval is the sign test's, the
  ratios' order statistics r_(k) .. r_(n+1-k) with the largest k for which
  2 * P(Binomial(n, 1/2) < k) <= 5% (an interval for the median that assumes
  nothing about the ratios' spread).  It needs 6 pairs: with 5, even the
  widest interval, min to max, covers only 1 - 2/32 = 93.75%.
- unpaired (unpaired()): two sets of runs not taken in turns (two results
  files, or one process's repeats against another's).  The estimate is the
  Hodges-Lehmann ratio, the median of all n * m ratios b_j / a_i; the interval
  is the Mann-Whitney test's, the k-th smallest to the k-th largest of those
  ratios, with k from the exact distribution of U.

Verdict at 95%: the whole interval above 1 is "slower" (time) or "heavier"
(memory), below 1 "faster" or "leaner", else "same"; "same" states the
smallest difference these runs could have shown, the interval's half-width on
a log scale.  Too few runs for a 95% interval give "untested"."""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

LEVEL = 0.95
MIN_PAIRS = 6
WORSE = {"time": "slower", "memory": "heavier", "count": "more"}
BETTER = {"time": "faster", "memory": "leaner", "count": "fewer"}


@dataclass(frozen=True)
class Comparison:
    """B against A: estimate, 95% interval [low, high] (None when untested), the
    coverage the interval really has, the runs behind it, and the verdict."""
    estimate: float | None
    low: float | None
    high: float | None
    coverage: float | None
    n: int                 # pairs, or the smaller of the two sets
    method: str            # "paired sign test", "unpaired Mann-Whitney", "min-max overlap"
    verdict: str           # faster/slower, leaner/heavier, fewer/more, same, untested
    detectable: float | None = None  # "same": the smallest relative difference the runs could show

    @property
    def significant(self) -> bool:
        return self.verdict not in ("same", "untested")

    def _digits(self) -> int:
        """3 decimals where the whole interval lies within 10% of 1 (an overhead), else 2; and, beside a
        verdict, as many more as it takes for the bound nearest 1 to show its side of 1 (a "slower"
        whose interval would print [1.000, 1.020] prints [1.0004, 1.020])."""
        near = [v for v in (self.low, self.high, self.estimate) if v is not None]
        d = 3 if near and all(0.9 <= v <= 1.1 for v in near) else 2
        bound = self.low if self.verdict in WORSE.values() else self.high if self.verdict in BETTER.values() else None
        while bound is not None and math.isfinite(bound) and d < 9 and round(bound, d) == 1:
            d += 1
        return d

    def interval(self) -> str:
        d = self._digits()
        return "-" if self.low is None else f"[{self.low:.{d}f}, {self.high:.{d}f}]"

    def words(self) -> str:
        """pyperf's manner: "1.23x slower [1.15, 1.31]", "same [0.97, 1.04], could see 4%", "untested (n=3)"."""
        if self.verdict == "untested":
            return f"untested ({self.method}, {self.n} runs: too few for a {LEVEL:.0%} interval)"
        d = self._digits()
        est = f"{self.estimate:.{d}f}x" if self.estimate is not None and math.isfinite(self.estimate) else "-"
        if self.verdict == "same":
            seen = f", could see ±{self.detectable:.0%}" if self.detectable is not None else ""
            return f"same {est} {self.interval()}{seen}"
        return f"{est} {self.verdict} {self.interval()}"

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "coverage": self.coverage,
                "n": self.n, "method": self.method, "verdict": self.verdict, "detectable": self.detectable}


def _ratio(b: float, a: float) -> float:
    if a == 0:
        return 1.0 if b == 0 else math.inf
    return b / a


def _verdict(low: float, high: float, kind: str) -> str:
    if low > 1:
        return WORSE[kind]
    if high < 1:
        return BETTER[kind]
    return "same"


def _detectable(low: float, high: float) -> float | None:
    if low <= 0 or not math.isfinite(high):
        return None
    return math.exp((math.log(high) - math.log(low)) / 2) - 1


def _finish(est, low, high, coverage, n, method, kind) -> Comparison:
    verdict = _verdict(low, high, kind)
    return Comparison(est, low, high, coverage, n, method, verdict,
                      _detectable(low, high) if verdict == "same" else None)


def binomial_tail(n: int, k: int) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    return sum(math.comb(n, i) for i in range(0, k + 1)) / 2 ** n


def sign_interval_rank(n: int, level: float = LEVEL) -> tuple[int, float] | None:
    """(k, coverage): the median's interval is the k-th smallest to the k-th
    largest of n values, the narrowest whose coverage is at least `level`."""
    best = None
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * binomial_tail(n, k - 1)
        if coverage >= level:
            best = (k, coverage)
        else:
            break
    return best


def paired(a: list[float], b: list[float], kind: str = "time") -> Comparison:
    """B against A from pairs (a_i, b_i) taken side by side."""
    if len(a) != len(b):
        raise ValueError(f"paired runs need equal counts, got {len(a)} and {len(b)}")
    ratios = sorted(_ratio(y, x) for x, y in zip(a, b))
    return paired_ratios(ratios, kind)


def paired_ratios(ratios: list[float], kind: str = "time") -> Comparison:
    """B/A from ratios already formed pair by pair."""
    ratios = sorted(ratios)
    n = len(ratios)
    est = statistics.median(ratios) if ratios else None
    rank = sign_interval_rank(n)
    if rank is None:
        return Comparison(est, None, None, None, n, "paired sign test", "untested")
    k, coverage = rank
    return _finish(est, ratios[k - 1], ratios[n - k], coverage, n, "paired sign test", kind)


def mann_whitney_counts(n: int, m: int) -> list[int]:
    """How many of the C(n+m, n) orderings give each U = 0 .. n*m: the
    coefficients of the Gaussian binomial [n+m choose n]_q."""
    c = [1]
    for i in range(1, m + 1):
        # times (1 - q^(n+i)), then divided by (1 - q^i)
        grown = c + [0] * (n + i)
        for d in range(len(c) - 1, -1, -1):
            grown[d + n + i] -= c[d]
        for d in range(i, len(grown)):
            grown[d] += grown[d - i]
        c = grown[:n * i + 1]
    return c


def mann_whitney_rank(n: int, m: int, level: float = LEVEL) -> tuple[int, float] | None:
    """(k, coverage): the interval is the k-th smallest to the k-th largest of
    the n*m pairwise ratios, the narrowest whose coverage is at least `level`."""
    counts = mann_whitney_counts(n, m)
    total = math.comb(n + m, n)
    best, below = None, 0
    for k in range(1, n * m // 2 + 1):
        below += counts[k - 1]  # P(U <= k - 1)
        coverage = 1 - 2 * below / total
        if coverage >= level:
            best = (k, coverage)
        else:
            break
    return best


def unpaired(a: list[float], b: list[float], kind: str = "time") -> Comparison:
    """B against A from two sets of runs that were not taken in turns."""
    n, m = len(a), len(b)
    if not n or not m:
        return Comparison(None, None, None, None, min(n, m), "unpaired Mann-Whitney", "untested")
    ratios = sorted(_ratio(y, x) for x in a for y in b)
    est = statistics.median(ratios)
    rank = mann_whitney_rank(n, m)
    if rank is None:
        return Comparison(est, None, None, None, min(n, m), "unpaired Mann-Whitney", "untested")
    k, coverage = rank
    return _finish(est, ratios[k - 1], ratios[-k], coverage, min(n, m), "unpaired Mann-Whitney", kind)


def min_max(a: tuple[float, float, float], b: tuple[float, float, float], kind: str = "time") -> Comparison:
    """Only (min, median, max) of each: a difference only where the ranges do
    not overlap, and no interval (records from before per-run data was kept)."""
    est = _ratio(b[1], a[1])
    verdict = WORSE[kind] if b[0] > a[2] else BETTER[kind] if b[2] < a[0] else "same"
    return Comparison(est, None, None, None, 0, "min-max overlap", verdict)


def compare(a: list[float], b: list[float], kind: str = "time", pairs: bool = False) -> Comparison:
    """paired() when the runs were taken in turns (equal counts), else unpaired()."""
    return paired(a, b, kind) if pairs and len(a) == len(b) else unpaired(a, b, kind)


def median_present(values) -> float | None:
    """The median of the values that are there (a run too short for an RSS sample has None), or None."""
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def geometric_mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else None


def best_of(runs: dict, kind: str = "time", pairs: bool = False) -> tuple[object | None, dict]:
    """The one key whose runs beat every other key's at 95% (lowest is best),
    else None; and each other key's comparison against the lowest median."""
    keys = sorted(runs, key=lambda k: statistics.median(runs[k]))
    if len(keys) < 2:
        return None, {}
    top = keys[0]
    against = {k: compare(runs[top], runs[k], kind, pairs) for k in keys[1:]}
    wins = all(c.verdict == WORSE[kind] for c in against.values())
    return (top if wins else None), against


# ---- records: which design applies ----

def cells(a: dict, b: dict, kind: str = "time", in_turns: bool = True) -> Comparison:
    """Cell B against cell A, ns per op: paired by process when both ran the
    same number (at least 6) of processes in turns (one sweep group: in_turns);
    else their processes' medians, unpaired, when each ran several; else the
    two cells' repeats, unpaired; else (old records) min-max overlap."""
    pa, pb = a.get("ns_per_op_by_process") or [], b.get("ns_per_op_by_process") or []
    if in_turns and len(pa) == len(pb) >= MIN_PAIRS:
        return paired(pa, pb, kind)
    if len(pa) > 1 and len(pb) > 1:
        return unpaired(pa, pb, kind)
    ra, rb = a.get("ns_per_op_repeats"), b.get("ns_per_op_repeats")
    if ra and rb:
        return unpaired(ra, rb, kind)
    na, nb = a["ns_per_op"], b["ns_per_op"]
    return min_max((na["min"], na["median"], na["max"]), (nb["min"], nb["median"], nb["max"]), kind)


def by_process(a: dict, b: dict, field: str, kind: str) -> Comparison:
    """Cell B against cell A on a per-process list (e.g. retained_after_free_bytes_by_process),
    paired when both have the same number of processes."""
    pa, pb = a.get(field) or [], b.get(field) or []
    return compare(pa, pb, kind, pairs=len(pa) == len(pb))


def runs(a: list[dict], b: list[dict], value, kind: str = "time", pairs: bool = True) -> Comparison:
    """Program runs (exec records) B against A on value(run): paired by repeat
    when the two were taken in turns (one grid run) and share at least 6
    repeats, else unpaired."""
    va = {r["repeat"]: value(r) for r in a if value(r) is not None}
    vb = {r["repeat"]: value(r) for r in b if value(r) is not None}
    common = sorted(set(va) & set(vb))
    if pairs and len(common) >= MIN_PAIRS:
        return paired([va[k] for k in common], [vb[k] for k in common], kind)
    return unpaired(list(va.values()), list(vb.values()), kind)


# ---- latency: quantiles of a histogram ----

MIN_QUANTILE_SPREAD = 10  # n q (1 - q) below this: too few calls for the normal approximation to the ranks


def _value_at_rank(histogram: list[list[float]], rank: int) -> float:
    """The rank-th smallest call (1-based) of a histogram of [highest value of the bucket, calls]."""
    seen = 0
    for value, count in histogram:
        seen += count
        if seen >= rank:
            return value
    return histogram[-1][0]


def quantile_interval(histogram: list[list[float]], q: float,
                      level: float = LEVEL) -> tuple[float, float, float] | None:
    """(estimate, low, high): a latency quantile and its distribution-free
    interval, the order statistics whose ranks are n q -/+ z sqrt(n q (1 - q))
    (the binomial count of calls below the true quantile, by its normal
    approximation); values are bucket edges, within 1/128.  None when the
    histogram holds too few calls (n q (1 - q) < 10) for that approximation."""
    n = sum(c for _, c in histogram)
    spread = n * q * (1 - q)
    if spread < MIN_QUANTILE_SPREAD:
        return None
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
    lo = max(1, math.floor(n * q - z * math.sqrt(spread)))
    hi = min(n, math.ceil(n * q + z * math.sqrt(spread)) + 1)
    return _value_at_rank(histogram, math.ceil(n * q)), _value_at_rank(histogram, lo), _value_at_rank(histogram, hi)


def quantiles(a_hist: list, b_hist: list, q: float, kind: str = "time") -> Comparison:
    """B's q-quantile against A's: the ratio, and an interval from the two
    quantiles' own intervals, each at sqrt(95%) so both hold together at
    least 95% of the time (low: B's low over A's high; high: B's high over
    A's low).  Untested when either has too few calls."""
    each = math.sqrt(LEVEL)
    a, b = quantile_interval(a_hist, q, each), quantile_interval(b_hist, q, each)
    n = min(sum(c for _, c in a_hist), sum(c for _, c in b_hist))
    if a is None or b is None:
        return Comparison(None, None, None, None, n, "quantile order statistics", "untested")
    return _finish(_ratio(b[0], a[0]), _ratio(b[1], a[2]), _ratio(b[2], a[1]), LEVEL, n,
                   "quantile order statistics", kind)
