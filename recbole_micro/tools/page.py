r"""The comparison page: ``<out>/<dataset>.md`` (results table, MICRO against each baseline, protocol,
settings, reproduce commands) and the chart ``<out>/<dataset>.png``, a pure function of the results
JSON and its per-user sidecars (``--from-json`` re-renders both without training).

With several seeds every number is mean ± sample standard deviation (ddof 1) over the seeds; the
statistics are ``stats.against`` (paired t-test over seeds, Wilcoxon signed-rank over users).
"""

import functools
import json
import os
import shlex
import textwrap

import recbole
import yaml

from recbole_micro.errors import ConfigError
from recbole_micro.tools import stats
from recbole_micro.tools.export import load_export
from recbole_micro.tools.files import atomic_write, params_text
from recbole_micro.tools.results import load_per_user, model_runs, ok_models, row_name
from recbole_micro.utils import PROPERTIES_DIR

METRICS = ("recall", "ndcg", "precision")
CUTOFFS = (10, 20)
SHORT = {"recall": "R", "ndcg": "N", "precision": "P"}
PROTOCOL_KEYS = ("seed", "reproducibility", "epochs", "eval_step", "stopping_step", "train_batch_size",
                 "valid_metric", "metrics", "topk", "eval_args", "benchmark_filename", "train_neg_sample_args",
                 "modalities", "test_mask_valid", "train_sampler", "eval_candidates", "tie_break")
# what a run that predates a recorded key did: before ``tie_break`` existed, RecBole's top-k ranked ties by item id
UNRECORDED = {"tie_break": "index"}
BABY_DATASETS = ("baby", "baby-cold")  # the shared data's Baby: real interactions, stand-in features
TARGET = "MICRO"  # the model tested against every other one
RATIO_BASELINES = ("LightGCN", "LATTICE")  # the ratios the headline line states (all baselines if none ran)
SIGNIFICANCE_METRIC = "recall@20"
RECBOLE_PROPERTIES = os.path.join(os.path.dirname(os.path.abspath(recbole.__file__)), "properties")
# MMRec's published Baby numbers (Zhou et al., MMRec toolbox; its own split, standard NDCG) and the
# LATTICE paper's. Shown for orientation only, labelled as not from this run.
REFERENCE_BABY = {
    "source": "MMRec (Zhou et al. 2023, evaluation/README.md), Amazon Baby, its own split and the original "
              "features; LATTICE paper (Zhang et al. 2021) for LATTICE†; LGMRec paper (Guo et al., AAAI 2024, "
              "Baby) for LGMRec‡",
    "rows": [("BPR", 0.0575, 0.0249), ("LightGCN", 0.0754, 0.0328), ("VBPR", 0.0663, 0.0284),
             ("LATTICE", 0.0850, 0.0370), ("LATTICE† (paper)", 0.0829, None), ("BM3", 0.0883, 0.0383),
             ("FREEDOM", 0.0992, 0.0424), ("LGMRec‡ (paper)", 0.1002, None)],
}


# --------------------------------------------------------------------------- numbers

def fmt(value, digits=4):
    """A metric value (``–`` when missing)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_p(p):
    """A p-value to 3 significant digits."""
    return "–" if p is None else f"{p:.3g}"


def cell(values, digits=4):
    """One value, or ``mean ± std`` of several (sample std, ddof 1)."""
    mean, std = stats.mean_std(values)
    if mean is None:
        return "–"
    return fmt(mean, digits) if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _values(runs, split, key):
    return [r[split][key] for r in runs if key in (r.get(split) or {})]


def _ok(doc, model):
    return model_runs(doc, model, "ok")


def _all_ok(doc):
    return [r for m in ok_models(doc) for r in _ok(doc, m)]


@functools.lru_cache(maxsize=None)
def contrastive_default(model):
    """The ``contrastive_mode`` default of the plugin's ``<model>.yaml``; None for models without that switch."""
    path = os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    return values.get("contrastive_mode")


def mode_text(runs):
    """What a row's runs measure beyond their model, e.g. ``sampled contrastive loss`` ("" for models
    without a contrastive-loss switch, whatever overrides they were given)."""
    modes = set()
    for r in runs:
        default = contrastive_default(r["model"])
        if default is not None:
            modes.add(str(r.get("contrastive_mode") or (r.get("overrides") or {}).get("contrastive_mode") or default))
    return f"{'/'.join(sorted(modes))} contrastive loss" if modes else ""


def row_label(doc, row):
    """A row's name with what it measures, e.g. ``MICRO (sampled contrastive loss)``."""
    mode = mode_text(_ok(doc, row))
    return f"{row} ({mode})" if mode else row


def _seeds_text(runs):
    return ", ".join(str(r["seed"]) for r in runs)


def _common_settings(runs):
    """``(common, differing)``: protocol settings equal across runs (the seed aside, when several seeds
    ran), and ``{key: {model: value}}`` otherwise."""
    several = len({str(r["seed"]) for r in runs}) > 1
    common, differing = {}, {}
    for key in PROTOCOL_KEYS:
        if key == "seed" and several:
            continue
        def value(run):
            recorded = (run.get("settings") or {}).get(key)
            return UNRECORDED.get(key) if recorded is None else recorded

        per_row, first = {}, {}  # row -> {value as JSON: [seeds]}; row -> its first run's value
        for r in runs:
            first.setdefault(row_name(r), value(r))
            per_row.setdefault(row_name(r), {}).setdefault(json.dumps(value(r), sort_keys=True), []).append(r["seed"])
        values = {row: first[row] if len(seen) == 1 else
                  _Seeds(" / ".join(f"{v} (seed{'s' if len(x) > 1 else ''} {', '.join(map(str, x))})"
                                    for v, x in seen.items())) for row, seen in per_row.items()}
        distinct = {json.dumps(value(r), sort_keys=True) for r in runs}
        if len(distinct) == 1:
            common[key] = next(iter(values.values()))
        else:
            differing[key] = values
    return common, differing


class _Seeds(str):
    """A row whose runs differ in a setting: each value with its seeds, shown as it is (not as JSON)."""


def _one_epoch(run):
    """A run of a model RecBole trains in one closed-form epoch (its TraditionalTrainer: EASE, ItemKNN, ...)."""
    return run["epoch_budget"] == 1 and run.get("epochs_run") == 1


def _eval_every(common, runs):
    """Validation interval as RecBole applies it: min(eval_step, epochs) (a budget below eval_step validates once);
    the one-epoch models (validated after their epoch) aside."""
    step = common.get("eval_step")
    budgets = {r["epoch_budget"] for r in runs if not _one_epoch(r)}
    if step is None or len(budgets) != 1:
        return step if step is not None else "?"
    return min(step, budgets.pop())


def _budget_text(runs):
    """The epoch budget: one number, the one-epoch models named beside it."""
    budgets = sorted({r["epoch_budget"] for r in runs if not _one_epoch(r)})
    single = sorted({r.get("name") or r["model"] for r in runs if _one_epoch(r)})
    text = str(budgets[0]) if len(budgets) == 1 else "differs per model (see the table)" if budgets else "1"
    if single and budgets:
        text += f" ({', '.join(single)}: 1, computed in one pass, validated after it)"
    return text


def _split_text(settings):
    if settings.get("benchmark_filename"):
        return (f"the dataset's fixed train/valid/test files (`benchmark_filename: {settings['benchmark_filename']}`), "
                "read identically for every model")
    split = (settings.get("eval_args") or {}).get("split")
    order = (settings.get("eval_args") or {}).get("order")
    return f"RecBole split `{split}` (order {order}) of one interaction file, with the same seed for every model"


# --------------------------------------------------------------------------- the chart

def plot_results(doc, png_path=None):
    r"""Bar chart of test Recall@20 and NDCG@20 per model (mean over seeds, error bars ± std) with the
    run settings as caption; saved to ``png_path`` when given. Returns the matplotlib ``Figure``."""
    from matplotlib.figure import Figure

    names = ok_models(doc)
    series = [("recall@20", "Recall@20", "#4C72B0"), ("ndcg@20", "NDCG@20", "#DD8452")]
    fig = Figure(figsize=(max(6.0, 1.3 * len(names) + 3), 4.8), dpi=110)
    ax = fig.add_axes([0.09, 0.27, 0.88, 0.64])
    top = 0.0
    width = 0.38
    for offset, (key, label, color) in enumerate(series):
        xs = [i + (offset - 0.5) * width for i in range(len(names))]
        summaries = [stats.mean_std(_values(_ok(doc, m), "test", key)) for m in names]
        heights = [0.0 if mean is None else mean for mean, _ in summaries]
        errors = [0.0 if std is None else std for _, std in summaries]
        top = max([top] + [h + e for h, e in zip(heights, errors)])
        bars = ax.bar(xs, heights, width, label=label, color=color,
                      yerr=errors if any(errors) else None, capsize=3 if any(errors) else 0)
        for bar, (mean, std) in zip(bars, summaries):
            text = fmt(mean) if std is None else f"{mean:.4f}±{std:.4f}"
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height() + (std or 0.0)),
                        ha="center", va="bottom", fontsize=6 if std else 7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([row_label(doc, m).replace(" (", "\n(") for m in names], fontsize=8)
    several = len({str(r["seed"]) for r in _all_ok(doc)}) > 1
    ax.set_ylabel("test score" + (" (mean ± std over seeds)" if several else ""), fontsize=8)
    ax.set_title(f"{doc['dataset']}: test Recall@20 and NDCG@20")
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    ax.set_ylim(0.0, 1.25 * top if top > 0 else 1.0)  # headroom for the value labels and the legend
    fig.text(0.02, 0.01, "\n".join(textwrap.wrap(caption(doc), 120)), fontsize=7, va="bottom", ha="left")
    if png_path:
        os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
        fig.savefig(png_path)
    return fig


def caption(doc):
    """The figure caption: split, seeds, selection, validation schedule, epochs run per model."""
    runs = _all_ok(doc)
    if not runs:
        return "no finished run"
    common, differing = _common_settings(runs)
    seeds = list(dict.fromkeys(r["seed"] for r in runs))
    epochs = ", ".join(f"{m} {','.join(str(r['epochs_run']) for r in _ok(doc, m))}/{_ok(doc, m)[0]['epoch_budget']}"
                       for m in ok_models(doc))
    split = "fixed split files" if common.get("benchmark_filename") else "random split"
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))} (mean ± std)"
    text = (f"{doc['dataset']}, {split}, {seed_text}, full ranking; selected on valid {runs[0]['valid_metric']}, "
            f"validation every {_eval_every(common, runs)} epochs, patience {common.get('stopping_step', '?')}; "
            f"epochs run/budget: {epochs}.")
    if differing:
        text += f" Settings differ across models: {', '.join(differing)}."
    return text


# --------------------------------------------------------------------------- the page

def render_page(doc, png_name=None, out="results", data_dir=None):
    r"""The Markdown page of a results document. ``data_dir``: the JSON's folder, where the per-user
    sidecars are (default ``out``)."""
    dataset = doc["dataset"]
    models = ok_models(doc)
    runs = _all_ok(doc)
    several = len({str(r["seed"]) for r in runs}) > 1
    lines = [f"# {dataset}: MICRO and RecBole baselines under one protocol", "",
             f"Generated by `run_compare.py` (`recbole_micro/tools/`) from `{dataset}.json` (last run "
             f"{doc.get('updated', '?')}); regenerate the page alone with the `--from-json` command below. Every "
             "number on this page comes from these runs, except the clearly marked published reference numbers.", ""]
    if dataset in BABY_DATASETS:
        lines += ["> **Data note.** The Amazon Baby interactions are real, but the item image/text features are "
                  "**reconstructed stand-ins** rebuilt from the real kNN-10 item graphs, not the original CNN / "
                  "sentence-transformer features (see `../shared/data/README.md`). Absolute numbers are therefore "
                  "not comparable with published ones.", ""]
    lines += ["## Results", ""]
    if models:
        lines += _results_table(doc, models, several)
        if png_name:
            lines += [f"![test Recall@20 and NDCG@20 per model]({png_name})", "", f"*Figure: {caption(doc)}*", ""]
    else:
        lines += ["No finished run yet.", ""]
    lines += _unfinished_section(doc)
    lines += _significance_section(doc, data_dir if data_dir is not None else out)
    lines += _variants_section(doc, models, data_dir if data_dir is not None else out)
    lines += _protocol_section(runs)
    lines += _settings_section(doc, models)
    lines += _tuning_section(doc, models, data_dir if data_dir is not None else out)
    if dataset == "baby":
        lines += _reference_section()
    lines += _reproduce_section(doc, out)
    return "\n".join(lines).rstrip() + "\n"


def _results_table(doc, models, several):
    metric_cols = [(split, m, k) for split in ("test", "valid") for m in METRICS for k in CUTOFFS]
    head = (["model", "seeds"] + [f"{split} {SHORT[m]}@{k}" for split, m, k in metric_cols]
            + ["s/epoch", "epochs run / budget", "epochs to best", "parameters"])
    best = {}
    for col in metric_cols:
        means = [stats.mean_std(_values(_ok(doc, m), col[0], f"{col[1]}@{col[2]}"))[0] for m in models]
        means = [v for v in means if v is not None]
        best[col] = max(means) if means else None
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|"]
    for model in models:
        runs = _ok(doc, model)
        label = row_label(doc, model)
        cells = [f"**{label}**" if model == TARGET else label, _seeds_text(runs)]
        for split, m, k in metric_cols:
            values = _values(runs, split, f"{m}@{k}")
            text = cell(values)
            mean = stats.mean_std(values)[0]
            bold = mean is not None and mean == best[(split, m, k)] and len(models) > 1
            cells.append(f"**{text}**" if bold else text)
        stopped = sum(bool(r.get("early_stopped")) for r in runs)
        stop = "" if not stopped else (" (early stop)" if stopped == len(runs) else f" (early stop: {stopped} of {len(runs)})")
        cells += [f"{stats.mean_std([r['seconds_per_epoch'] for r in runs])[0]:.2f}",
                  f"{', '.join(str(r['epochs_run']) for r in runs)} / {runs[0]['epoch_budget']}{stop}",
                  ", ".join(fmt(r.get("epochs_to_best")) for r in runs), f"{runs[0]['params']:,}"]
        lines.append("| " + " | ".join(cells) + " |")
    spread = (" Each metric cell is the mean ± sample standard deviation (ddof 1) over the seeds listed; the "
              "per-seed values are in the JSON." if several else "")
    lines += ["", "R = Recall, N = NDCG, P = Precision. Test columns are measured once, at each model's best "
              "validation epoch; bold marks the best per column." + spread + " s/epoch = training wall time "
              "(including the periodic validation) divided by epochs run, on the machine that ran it (mean over "
              "seeds); parameters = trainable parameters (MICRO's include the raw item features, which it "
              "fine-tunes like the reference).", ""]
    return lines


def _unfinished_section(doc):
    failed, unfinished = [], []
    for model in doc["order"]:
        for run in model_runs(doc, model):
            tag = f"{model} (seed {run.get('seed')})"
            if run.get("status") == "failed":
                failed.append(f"- {tag}: {run.get('error')}")
            elif run.get("status") != "ok":
                unfinished.append(f"- {tag}: {run.get('status')} since {run.get('started', '?')}, checkpoint "
                                  f"`{run.get('checkpoint')}`; continue it with the same command and `--resume`")
    lines = []
    if failed:
        lines += ["Failed runs:", ""] + failed + [""]
    if unfinished:
        lines += ["Unfinished runs (not in the table):", ""] + unfinished + [""]
    return lines


def significance(doc, data_dir, target=TARGET, metric=SIGNIFICANCE_METRIC, bases=None):
    """``{baseline: stats.against(...)}`` for every row with finished runs besides ``target`` (or ``bases``)."""
    models = ok_models(doc)
    if target not in models:
        return {}

    def per_user(model):
        found = {}
        for run in _ok(doc, model):
            values = load_per_user(data_dir, run)
            if values is not None:
                found[str(run["seed"])] = values
        return found

    target_users = per_user(target)
    return {base: stats.against(_ok(doc, target), _ok(doc, base), target_users, per_user(base), metric)
            for base in (models if bases is None else bases) if base != target}


def strongest_baseline(doc, results):
    r"""The row of another model (not a variant of ``TARGET``) with the highest mean test value over the seeds it
    shares with ``TARGET``, or None."""
    rows = [b for b in results if results[b]["baseline"] and _ok(doc, b)[0]["model"] != TARGET]
    return max(rows, key=lambda b: sum(results[b]["baseline"]) / len(results[b]["baseline"]), default=None)


def _ratio_text(result):
    r = result["ratio"]
    if r["mean"] is None:
        return "–"
    return f"{r['mean']:.3f}" if r["std"] is None else f"{r['mean']:.3f} ± {r['std']:.3f}"


def _verdict(result, base):
    if result.get("behind"):
        return f"significantly behind {base}"
    return f"{ {True: 'significant', False: 'not significant', None: 'untested'}[result['significant']]} over {base}"


def _significant_cell(result):
    if result.get("behind"):
        return "no: the baseline is significantly ahead"
    return {True: "yes", False: "no", None: "untested"}[result["significant"]]


def _tests_text(result):
    parts = []
    if result["seed_test"]:
        parts.append(f"paired t over {result['seed_test']['n']} seeds p = {fmt_p(result['seed_test']['p'])}")
    if result["user_test"]:
        parts.append(f"Wilcoxon over {result['user_test']['n_pairs']:,} users p = {fmt_p(result['user_test']['p'])}")
    return "; ".join(parts) or "one seed and no per-user values: no test possible"


def _significance_section(doc, data_dir):
    results = significance(doc, data_dir)
    if not results:
        return []
    metric = SIGNIFICANCE_METRIC
    label = _metric_label(metric)
    headline = [b for b in RATIO_BASELINES if b in results] or list(results)
    strongest = strongest_baseline(doc, results)
    if strongest and strongest not in headline:  # where the target stands: against the best other model too
        headline.append(strongest)
    seeds_n = max(r["ratio"]["n"] for r in results.values())
    how = ("mean ± std over seeds of the per-seed ratio" if seeds_n > 1 else "one seed: no spread over seeds")
    ratios = ", ".join(f"{TARGET} / {b}{' (the strongest baseline)' if b == strongest else ''} = "
                       f"{_ratio_text(results[b])}" for b in headline)
    verdicts = "; ".join(f"{_verdict(results[b], b)} ({_tests_text(results[b])})" for b in headline)
    mode = mode_text(_ok(doc, TARGET))
    lines = [f"## {TARGET} against each baseline", "",
             f"**Test {label} ratio: {ratios}** ({how}{'; ' + TARGET + ' with the ' + mode if mode else ''}). "
             f"{TARGET}'s gain: {verdicts}.", "",
             f"Paired over seeds: {stats.SEED_TEST}, on each seed's test {label}. Paired over users: {stats.USER_TEST}, "
             f"on the per-user test {label} of each model's best-validation checkpoint, users paired by token (with "
             f"several seeds, each user's value averaged over the seeds both models ran). Significant = {TARGET}'s "
             f"mean is higher and every available test gives p < {stats.ALPHA} (significantly behind: lower, and every "
             f"test gives p < {stats.ALPHA}). Per-user values: "
             f"`{doc['dataset']}-per-user/<model>-seed<seed>.npz` beside the JSON.", ""]
    return lines + _against_table(results, TARGET, label) + [""]


def _against_table(results, target, label):
    """The rows of ``significance`` results: the target against each baseline, ratio and both paired tests."""
    lines = [f"| baseline | seeds paired | {target} test {label} | baseline test {label} | ratio {target} / baseline "
             f"| paired t over seeds: t, p | users paired (non-zero differences) | Wilcoxon over users: p | significant |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for base, r in results.items():
        st, ut = r["seed_test"], r["user_test"]
        lines.append(" | ".join([
            f"| {base}", ", ".join(map(str, r["seeds"])) or "–", cell(r["target"]), cell(r["baseline"]),
            _ratio_text(r), "–" if not st else f"{st['statistic']:.3f}, {fmt_p(st['p'])}",
            "–" if not ut else f"{ut['n_pairs']:,} ({ut['n_nonzero']:,})", "–" if not ut else fmt_p(ut["p"]),
            _significant_cell(r),
        ]) + " |")
    return lines


def rows_by_model(doc, models):
    """``{model class: [its rows, in page order]}`` (a row is a model's own runs or a named variant of it)."""
    classes = {}
    for row in models:
        classes.setdefault(_ok(doc, row)[0]["model"], []).append(row)
    return classes


def _metric_label(metric):
    return "Recall@20" if metric == "recall@20" else metric


def variant_choices(doc, models):
    r"""``[(model class, rows, shared seeds, {row: mean valid score}, chosen row, chosen row's mean test)]`` for
    every model class with several rows (other samplers, cold-item rules, ablations): each row's mean of its
    selection metric (``best_valid_score``) over the seeds all the class's rows ran, and the row validation
    chooses (the first of equals in page order). Test is reported for the chosen row only; it never chooses."""
    choices = []
    for model, rows in rows_by_model(doc, models).items():
        if len(rows) < 2:
            continue
        seeds = set.intersection(*({str(r["seed"]) for r in _ok(doc, row)} for row in rows))
        shared = {row: [r for r in _ok(doc, row) if str(r["seed"]) in seeds] for row in rows}
        valid = {row: stats.mean_std([r["best_valid_score"] for r in runs])[0] for row, runs in shared.items()}
        chosen = None
        if seeds:
            chosen = max(rows, key=lambda row: valid[row])  # max() keeps the first of equals
        metric = _ok(doc, rows[0])[0].get("valid_metric", SIGNIFICANCE_METRIC)
        test = stats.mean_std([r["test"].get(metric) for r in shared[chosen]])[0] if chosen else None
        order = [str(r["seed"]) for r in _ok(doc, rows[0]) if str(r["seed"]) in seeds]  # as the rows list them
        choices.append((model, rows, order, valid, chosen, test))
    return choices


def _variants_section(doc, models, data_dir):
    choices = variant_choices(doc, models)
    if not choices:
        return []
    metric = _ok(doc, models[0])[0].get("valid_metric", SIGNIFICANCE_METRIC)
    lines = ["## Variants of one model, chosen on validation", "",
             f"Rows that train the same model with other settings (sampler, cold-item rule, an ablation) are "
             f"alternatives a user would choose between on validation, not on test: each row's mean valid {metric} "
             f"at its best epoch over the seeds every row of the model ran, and the row that this choice keeps "
             f"(its mean test {metric} over the same seeds is shown; test never chooses).", "",
             f"| model | seeds shared | valid {metric} per row | chosen on validation | its test {metric} |",
             "|---|---|---|---|---:|"]
    for model, rows, seeds, valid, chosen, test in choices:
        per_row = ", ".join(f"{row_label(doc, row)} {fmt(valid[row])}" for row in rows) if seeds else "–"
        lines.append(f"| {model} | {', '.join(seeds) or 'none: not comparable'} | {per_row} | "
                     f"{row_label(doc, chosen) if chosen else '–'} | {fmt(test)} |")
    lines.append("")
    chosen = {model: row for model, _, _, _, row, _ in choices if row}
    target = chosen.get(TARGET, TARGET)
    if target == TARGET:  # the table above already pairs the target with every row, the chosen ones included
        return lines
    bases = [chosen.get(model, rows[0]) for model, rows in rows_by_model(doc, models).items() if model != TARGET]
    results = significance(doc, data_dir, target=target, bases=bases)
    return lines + [f"Validation chooses {target} for {TARGET}: {target} against each other model's row chosen the "
                    f"same way (a model with one row: that row), tested as above.", ""] + \
        _against_table(results, target, _metric_label(SIGNIFICANCE_METRIC)) + [""]


def _mask_text(value):
    if value is None:
        return ("each user's training items masked (and, on test, the validation items: RecBole's mask; "
                "`test_mask_valid` not recorded by these runs)")
    if value:
        return "each user's training items masked (and, on test, the validation items: `test_mask_valid: True`, RecBole's mask)"
    return "each user's training items masked, on test too (`test_mask_valid: False`, the reference's mask)"


def _candidates_text(value):
    if value == "cold":
        return ("each split's cold items only (`eval_candidates: cold`: validation ranks the items whose "
                "interactions are all in valid, test those whose interactions are all in test; every other item "
                "scores −∞, `recbole_micro/evaluation.py`)")
    if value is None:
        return "all items (`eval_candidates` not recorded by these runs)"
    return "all items"


def _ties_text(value):
    if value == "random":
        return "in a random order drawn for each evaluation (`tie_break: random`, `recbole_micro/ties.py`)"
    return "by item id (`tie_break: index`: RecBole's `torch.topk` order)"


def _sampler_text(value):
    if value is None:
        return "RecBole's (one triple per training interaction; `train_sampler` not recorded by these runs)"
    return f"`train_sampler: {value}`" + (" (RecBole's: one triple per training interaction)" if value == "interaction"
                                          else " (the reference's: users drawn per step)" if value == "user" else "")


def _protocol_section(runs):
    if not runs:
        return []
    common, differing = _common_settings(runs)

    def setting(key, text):
        """One setting's text: the common value's, or a pointer to the per-model list below."""
        return f"per model (`{key}`, listed under *Not identical across models*)" if key in differing else text(common.get(key))
    budget = _budget_text(runs)
    metric = runs[0]["valid_metric"]
    seeds = list(dict.fromkeys(r["seed"] for r in runs))
    seed_text = (f"{seeds[0]}" if len(seeds) == 1 else
                 f"{', '.join(map(str, seeds))}: every model runs once with each seed")
    settings = common or runs[0].get("settings") or {}
    lines = [
        "## Protocol", "",
        "The same for every model (the plugin's `properties/overall.yaml`, overridden only where stated):", "",
        f"- **Split:** {_split_text(settings)}.",
        f"- **Seed{'s' if len(seeds) > 1 else ''}:** {seed_text} (`reproducibility: {common.get('reproducibility')}`).",
        f"- **Training:** RecBole's trainer; batches of {setting('train_batch_size', str)} training examples "
        f"(user, positive item and its sampled negatives); negatives "
        f"{setting('train_neg_sample_args', lambda v: f'`{v}`' if v else 'none (the model needs none)')}; sampler "
        f"{setting('train_sampler', _sampler_text)}.",
        f"- **Epoch budget:** {budget}; validation every {_eval_every(common, runs)} epochs; early stopping "
        f"after {common.get('stopping_step', '?')} validations without improvement of valid `{metric}`. Each "
        "model's epochs actually run and the epoch of its best validation are in the table: a model stopped by "
        "the budget rather than by early stopping may be under-trained.",
        f"- **Selection:** the checkpoint with the best valid `{metric}`; test is evaluated once on it (selection "
        "never looks at test).",
        f"- **Evaluation:** full ranking (`mode: {(common.get('eval_args') or {}).get('mode')}`) over "
        f"{setting('eval_candidates', _candidates_text)}, "
        f"{setting('test_mask_valid', _mask_text)}; equal scores ranked {setting('tie_break', _ties_text)}, "
        "which changes no metric where no two scores tie; metrics "
        f"{common.get('metrics')} at {common.get('topk')}, averaged over users with at least one held-out item.",
        "- **Metric definitions (RecBole):** Recall@K = |hits in top K| / |user's held-out items|; "
        "Precision@K = |hits in top K| / K; NDCG@K = DCG@K / IDCG@K with binary relevance, DCG@K = "
        "Σ_{hits at rank r ≤ K} 1/log2(r+1) and IDCG@K the DCG of min(K, |held-out items|) hits ranked first — "
        "the standard NDCG. The MICRO/LATTICE reference code computes IDCG over the retrieved hits only, "
        "which reads higher; its NDCG numbers are not comparable with these.",
    ]
    if differing:
        lines.append("- **Not identical across models:** " + "; ".join(
            f"`{k}`: " + ", ".join(f"{m} {v if isinstance(v, _Seeds) else json.dumps(v)}" for m, v in values.items())
            for k, values in differing.items()) + ".")
    return lines + [""]


def _settings_section(doc, models):
    if not models:
        return []
    lines = ["## Model settings", "", "| model | hyper-parameters | source |", "|---|---|---|"]
    # an override of a key that plugin models add (contrastive_mode, say) is not listed for a model whose yamls,
    # the plugin's and RecBole's, do not define it: that model never reads it. Keys of the plugin's overall.yaml
    # (train_sampler, say) are read by every model, whichever model yaml also sets them.
    plugin_keys = frozenset().union(*(_plugin_keys(name) for name in _plugin_models())) - _yaml_keys(
        os.path.join(PROPERTIES_DIR, "overall.yaml"))
    for model in models:
        r = _ok(doc, model)[0]
        params = ", ".join(f"`{k}={v}`" for k, v in (r.get("hyper") or {}).items())
        tuned = r.get("tuned_from")
        source = (f"tuned: best valid trial {tuned['trial']} of `{tuned_export_name(tuned)}` (grid below)" if tuned
                  else "defaults (RecBole's model yaml + the plugin's)")
        if tuned and tuned.get("dataset") not in (None, doc["dataset"]):  # e.g. cold start on Baby's points
            source += f", selected on {tuned['dataset']}'s validation split, not this dataset's"
        taken = sorted(run["seed"] for run in _ok(doc, model) if run.get("from_trial"))
        if taken:  # tools.trial_run: the search's trial on its own seed is that run
            source += (f"; seed {', '.join(map(str, taken))}: that trial itself (the search's seed and configuration; "
                       f"scored on test again from its checkpoint, not trained twice)")
        extra = {k: v for k, v in (r.get("overrides") or {}).items()
                 if k not in ("data_path", "checkpoint_dir", "state", "show_progress", "progress_every", "log_wandb",
                              "seed")
                 and not (k in plugin_keys and k not in _model_keys(r["model"]))}
        if extra:
            source += "; overrides " + ", ".join(f"`{k}={v}`" for k, v in extra.items())
        lines.append(f"| {model} | {params} | {source} |")
    return lines + [""]


def _plugin_models():
    return sorted(f[:-len(".yaml")] for f in os.listdir(os.path.join(PROPERTIES_DIR, "model")) if f.endswith(".yaml"))


@functools.lru_cache(maxsize=None)
def _yaml_keys(path):
    if not os.path.isfile(path):
        return frozenset()
    with open(path, encoding="utf-8") as handle:
        return frozenset(yaml.safe_load(handle) or {})


def _plugin_keys(model):
    """The config keys the plugin's ``properties/model/<model>.yaml`` defines."""
    return _yaml_keys(os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"))


def _model_keys(model):
    """The config keys a model reads from its yamls: the plugin's and RecBole's ``properties/model/<model>.yaml``."""
    return _plugin_keys(model) | _yaml_keys(os.path.join(RECBOLE_PROPERTIES, "model", f"{model}.yaml"))


def tuned_export_name(tuned):
    """Where a run's tuning export is shipped, relative to its results JSON: ``tuning/<file>``."""
    return "tuning/" + os.path.basename(tuned["source"])


def _tuning_section(doc, models, data_dir):
    r"""Each tuned model's search, read from its export shipped beside the JSON (``tuning/``): every trial's
    parameters, valid and test values, epochs; the chosen (best valid) trial in bold."""
    tuned, rows = {}, {}  # one grid per export, named by every row that took its parameters
    for m in models:
        for r in _ok(doc, m)[:1]:
            if r.get("tuned_from"):
                name = tuned_export_name(r["tuned_from"])
                tuned.setdefault(name, r["tuned_from"])
                rows.setdefault(name, []).append(m)
    if not tuned:
        return []
    lines = ["## Hyper-parameter selection (tuned models)", "",
             "Each tuned model's grid, searched exhaustively on validation with `run_hyper.py` under the protocol "
             "above (one seed, the search's); the trial with the best valid value (bold) gives the parameters "
             "every seed above trains with. Test values are shown for reference: the choice never reads them.", ""]
    for name, source in tuned.items():
        model = ", ".join(rows[name])
        try:
            export = load_export(os.path.join(data_dir, name))
        except ConfigError:
            lines += [f"- {model}: the export `{name}` is not beside the JSON (the publish step copies it there).", ""]
            continue
        metric = export.get("valid_metric", "?")
        done = f"{len(export['trials'])} of {export.get('max_evals', '?')} trials"
        lines += [f"**{model}** (`{name}`, {export.get('algo', '?')} search over "
                  f"`{json.dumps(export.get('space'))}`, seed {export.get('seed', '?')}, {done}):", "",
                  f"| trial | parameters | valid {metric} | test {metric} | epochs run | epochs to best |",
                  "|---:|---|---:|---:|---:|---:|"]
        for trial in export["trials"]:
            chosen = trial["trial"] == source.get("trial")
            mark = (lambda text: f"**{text}**") if chosen else (lambda text: text)
            if trial.get("status") != "ok":
                lines.append(f"| {trial['trial']} | {params_text(trial['params'])} | failed | – | – | – |")
                continue
            lines.append(f"| {mark(trial['trial'])} | {mark(params_text(trial['params']))} | "
                         f"{mark(fmt(trial['best_valid_score']))} | {fmt((trial.get('test') or {}).get(metric))} | "
                         f"{fmt(trial.get('epochs_run'))} | {_epochs_to_best(trial.get('best_epoch'))} |")
        lines.append("")
    return lines


def _epochs_to_best(best_epoch):
    """RecBole's 0-based best epoch as the number of epochs trained up to it (the results table's column)."""
    return fmt(best_epoch + 1 if isinstance(best_epoch, int) else None)


def _reference_section():
    lines = ["## Published reference numbers — NOT from this run", "",
             f"Source: {REFERENCE_BABY['source']}. Different split, the original item features and other "
             "training code: compare the *ordering and ratios* between models, not absolute values, with the "
             "table above.", "", "| model (published) | Recall@20 | NDCG@20 |", "|---|---:|---:|"]
    for name, recall, ndcg in REFERENCE_BABY["rows"]:
        lines.append(f"| {name} | {fmt(recall)} | {fmt(ndcg)} |")
    return lines + [""]


def _reproduce_section(doc, out="results"):
    lines = ["## Reproduce", "", "Runs that produced the JSON (append runs merge into it):", "", "```bash"]
    lines += doc.get("commands") or ["# (no command recorded)"]
    lines += ["```", "", "Re-render this page and the chart from the JSON without training:", "", "```bash",
              f"python run_compare.py --dataset {doc['dataset']} --from-json"
              + ("" if os.path.normpath(out) == "results" else f" --out {shlex.quote(out)}"), "```", ""]
    return lines


def write_page(doc, out, data_dir=None):
    r"""Write ``<out>/<dataset>.md`` and ``<out>/<dataset>.png`` from a results document; returns both paths."""
    dataset = doc["dataset"]
    png_path = os.path.join(out, f"{dataset}.png")
    png_name = None
    if ok_models(doc):
        plot_results(doc, png_path)
        png_name = os.path.basename(png_path)
    md_path = os.path.join(out, f"{dataset}.md")
    atomic_write(md_path, render_page(doc, png_name, out, data_dir))
    return md_path, (png_path if png_name else None)
