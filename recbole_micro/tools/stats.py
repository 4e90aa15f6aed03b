r"""Statistics of a comparison: mean ± standard deviation over seeds, paired tests, ratios.

* Over seeds: sample standard deviation (``ddof=1``); MICRO against a baseline by the **paired t-test**
  over the seeds both ran (``scipy.stats.ttest_rel``, two-sided): each seed fixes the split-independent
  randomness (initialisation, negatives) shared by the pair.
* Over users: the **Wilcoxon signed-rank test** (``scipy.stats.wilcoxon``, two-sided, zero differences
  dropped: scipy's default ``zero_method='wilcox'``) on the per-user test values of the
  best-validation checkpoints, paired by user token; with several seeds each user's value is first
  averaged over the seeds both models ran.
* The ratio target / baseline of a test metric: the mean ± standard deviation over seeds of the
  per-seed ratio (paired by seed).
"""

import math

import numpy as np
from scipy import stats

SEED_TEST = "paired t-test over seeds (scipy.stats.ttest_rel, two-sided)"
USER_TEST = "Wilcoxon signed-rank test over users (scipy.stats.wilcoxon, two-sided, zero differences dropped)"
ALPHA = 0.05


def mean_std(values):
    """``(mean, std)`` of a list; std is the sample standard deviation (ddof 1), None for fewer than 2."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None
    mean = float(np.mean(values))
    return mean, (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def paired_by_seed(runs_a, runs_b, metric, split="test"):
    """``(seeds, a, b)``: the ``split`` values of ``metric`` for the seeds both run lists finished."""
    b_by_seed = {str(r["seed"]): r for r in runs_b}
    seeds, a, b = [], [], []
    for run in runs_a:
        other = b_by_seed.get(str(run["seed"]))
        if other is None or metric not in run[split] or metric not in other[split]:
            continue
        seeds.append(run["seed"])
        a.append(float(run[split][metric]))
        b.append(float(other[split][metric]))
    return seeds, a, b


def seed_test(a, b):
    """Paired t-test of ``a`` against ``b`` (same seeds): ``{"n", "statistic", "p"}``; None under 2 pairs."""
    if len(a) < 2:
        return None
    result = stats.ttest_rel(a, b)
    p = float(result.pvalue)
    return {"test": SEED_TEST, "n": len(a), "statistic": float(result.statistic), "p": None if math.isnan(p) else p}


def ratio(a, b):
    """Per-seed ratios ``a_i / b_i``: ``{"n", "mean", "std", "values"}`` (std None for one seed)."""
    values = [x / y for x, y in zip(a, b) if y]
    mean, std = mean_std(values)
    return {"n": len(values), "mean": mean, "std": std, "values": values}


def user_pairs(per_user_a, per_user_b, metric):
    r"""Pair two models' per-user values by user token.

    ``per_user_a`` / ``per_user_b``: ``{seed: {"users": tokens, metric: values}}``. Uses the seeds both
    have; a user's value is its mean over those seeds; only users present in every one of them are kept.
    Returns ``(users, a, b, seeds)`` (arrays sorted by token).
    """
    seeds = [s for s in per_user_a if s in per_user_b and metric in per_user_a[s] and metric in per_user_b[s]]
    users, sums_a, sums_b = None, None, None
    for seed in seeds:
        va, vb = per_user_a[seed], per_user_b[seed]
        common, ia, ib = np.intersect1d(va["users"], vb["users"], assume_unique=True, return_indices=True)
        xa, xb = np.asarray(va[metric], dtype=np.float64)[ia], np.asarray(vb[metric], dtype=np.float64)[ib]
        if users is None:
            users, sums_a, sums_b = common, xa, xb
            continue
        keep, i_old, i_new = np.intersect1d(users, common, assume_unique=True, return_indices=True)
        users, sums_a, sums_b = keep, sums_a[i_old] + xa[i_new], sums_b[i_old] + xb[i_new]
    if users is None:
        return np.array([], dtype=str), np.array([]), np.array([]), []
    return users, sums_a / len(seeds), sums_b / len(seeds), seeds


def user_test(a, b):
    """Wilcoxon signed-rank test of paired per-user values: ``{"n_pairs", "n_nonzero", "statistic", "p"}``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nonzero = int(np.count_nonzero(a - b))
    result = {"test": USER_TEST, "n_pairs": int(len(a)), "n_nonzero": nonzero, "statistic": None, "p": None}
    if nonzero == 0:
        return result
    test = stats.wilcoxon(a, b)
    result.update(statistic=float(test.statistic), p=float(test.pvalue))
    return result


def against(target_runs, base_runs, target_users, base_users, metric="recall@20"):
    r"""Everything the page states about target vs one baseline on test ``metric``.

    ``*_runs``: finished runs (with ``seed`` and ``test``); ``*_users``: ``{seed: per-user values}``.
    ``significant`` is True when the target's mean is higher and every available test has p < ``ALPHA``
    (None when no test is possible: one seed and no per-user values); ``behind`` is True when the target's mean
    is lower and every available test has p < ``ALPHA`` (the baseline significantly ahead).
    """
    seeds, a, b = paired_by_seed(target_runs, base_runs, metric)
    users, ua, ub, user_seeds = user_pairs(target_users, base_users, metric)
    by_seed = seed_test(a, b)
    by_user = user_test(ua, ub) if len(users) else None
    tests = [t for t in (by_seed, by_user) if t is not None and t.get("p") is not None]
    higher = bool(a) and float(np.mean(a)) > float(np.mean(b))
    decisive = bool(tests) and all(t["p"] < ALPHA for t in tests)  # every available test below ALPHA
    return {
        "metric": metric, "seeds": seeds, "target": a, "baseline": b, "ratio": ratio(a, b),
        "seed_test": by_seed, "user_test": by_user, "user_seeds": user_seeds,
        "significant": (higher and decisive) if tests else None,
        "behind": decisive and bool(a) and float(np.mean(a)) < float(np.mean(b)),
        "tests_used": len(tests),
    }
