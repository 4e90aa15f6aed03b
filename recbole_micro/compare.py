r"""One-command comparison of MICRO with RecBole's baselines on the same data, split, seed and evaluator.

Every model runs through ``quick_start.run_recbole_micro`` — the plugin's ``properties/overall.yaml``
(protocol) applies to all of them, the dataset's fixed split is read once per model from the same
files, and each model is selected on validation and tested at its best validation epoch.

Results go to ``<out>/<dataset>.json`` (machine-readable, merged with ``--append``), and the page
``<out>/<dataset>.md`` with a bar chart ``<out>/<dataset>.png`` is (re)written from that JSON alone
(``--from-json`` re-renders without training), so long runs can be split across jobs::

    python run_compare.py --dataset baby --models BPR,LightGCN,NGCF,MICRO --epochs 50
    python run_compare.py --dataset baby --models MICRO --epochs 50 --append      # a later job
    python run_compare.py --dataset baby --from-json                              # page only
"""

import argparse
import datetime
import json
import logging
import os
import re
import shlex
import sys
import textwrap
import time
import traceback

from recbole_micro.errors import ConfigError, RecboleMicroError

FORMAT = "recbole-micro comparison 1"
METRICS = ("recall", "ndcg", "precision")
CUTOFFS = (10, 20)
SHORT = {"recall": "R", "ndcg": "N", "precision": "P"}
PROTOCOL_KEYS = ("seed", "reproducibility", "epochs", "eval_step", "stopping_step", "train_batch_size",
                 "valid_metric", "metrics", "topk", "eval_args", "benchmark_filename", "train_neg_sample_args",
                 "modalities")
# MMRec's published Baby numbers (Zhou et al., MMRec toolbox; its own split, standard NDCG) and the
# LATTICE paper's. Shown for orientation only, labelled as not from this run.
REFERENCE_BABY = {
    "source": "MMRec (Zhou et al. 2023), Amazon Baby, its own split and the original features; LATTICE paper "
              "(Zhang et al. 2021) for LATTICE†",
    "rows": [("BPR", 0.0575, 0.0249), ("LightGCN", 0.0754, 0.0328), ("VBPR", 0.0663, 0.0284),
             ("LATTICE", 0.0850, 0.0370), ("LATTICE† (paper)", 0.0829, None), ("FREEDOM", 0.0992, 0.0424)],
}


# --------------------------------------------------------------------------- running

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TRAIN = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s, (.*)\]")
_VALID = re.compile(r"epoch (\d+) evaluating \[time: ([\d.]+)s, valid_score: ([-\d.eE+naif]+)\]")


class ProgressLines(logging.Handler):
    """Turns RecBole's per-epoch log records into one short stdout line per epoch (and per validation)."""

    def __init__(self, prefix, budget, valid_metric):
        super().__init__(logging.INFO)
        self.prefix, self.budget, self.valid_metric = prefix, budget, valid_metric

    def emit(self, record):
        try:
            message = _ANSI.sub("", record.getMessage())
        except Exception:  # noqa: BLE001 - a progress line must never break training
            return
        match = _TRAIN.search(message)
        if match:
            epoch, seconds, losses = match.groups()
            print(f"{self.prefix} epoch {int(epoch) + 1}/{self.budget}: {float(seconds):.2f} s, {losses}", flush=True)
            return
        match = _VALID.search(message)
        if match:
            epoch, _, score = match.groups()
            print(f"{self.prefix} epoch {int(epoch) + 1}: valid {self.valid_metric} {float(score):.4f}", flush=True)


def _now():
    return datetime.datetime.now().isoformat(timespec="seconds")


def _plain(value):
    from recbole_micro.tuning import _plain as plain

    return plain(value)


def load_tuned(files):
    r"""``{model: {"params", "source", "trial", "best_valid_score"}}`` from tuning exports (best by valid)."""
    from recbole_micro.tuning import load_export

    if isinstance(files, str):
        files = [f for f in files.split(",") if f]
    tuned = {}
    for path in files or []:
        doc = load_export(path)
        best = doc.get("best")
        if not best:
            raise ConfigError(f"{path}: the tuning export has no finished trial to take parameters from")
        if doc["model"] in tuned:
            raise ConfigError(f"{path}: a second tuning export for {doc['model']} (first: "
                              f"{tuned[doc['model']]['source']}); pass one per model")
        tuned[doc["model"]] = {"params": best["params"], "source": path, "trial": best["trial"],
                               "best_valid_score": best["best_valid_score"], "dataset": doc["dataset"]}
    return tuned


def _hyper_keys(model):
    """Names of the model's searched parameters (from its shipped .hyper file), for the settings table."""
    from recbole_micro.tuning import HYPER_DIR, read_hyper_file

    path = os.path.join(HYPER_DIR, f"{model}.hyper")
    keys = ["learning_rate"]
    if os.path.isfile(path):
        keys += [k for group in read_hyper_file(path).values() for k in group if k not in keys]
    return keys


def run_model(model, dataset, config_dict, config_files=None, prefix="[compare]"):
    r"""Train and test one model; returns its result entry (metrics, cost, resolved protocol settings)."""
    from recbole_micro.quick_start import run_recbole_micro
    from recbole_micro.tuning import resolve_config

    config = resolve_config(model, dataset, config_files, config_dict)
    budget, metric = config["epochs"], config["valid_metric"].lower()
    print(f"{prefix} {model} on {dataset}: training (budget {budget} epochs, validating every "
          f"{config['eval_step']}, patience {config['stopping_step']})", flush=True)
    root = logging.getLogger()
    level = root.level
    handler = ProgressLines(f"{prefix} {model}", budget, metric)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        sys.argv = sys.argv[:1]
        result = run_recbole_micro(model=model, dataset=dataset, config_file_list=config_files,
                                   config_dict=dict(config_dict), saved=True)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    resolved = {}
    if result.get("record") and os.path.isfile(result["record"]):
        with open(result["record"], encoding="utf-8") as f:
            resolved = json.load(f).get("config", {})
    settings = {k: _plain(resolved.get(k, config[k])) for k in PROTOCOL_KEYS}
    best_epoch = result.get("best_epoch")
    entry = {
        "model": model, "status": "ok",
        "valid": _plain(result["best_valid_result"]), "test": _plain(result["test_result"]),
        "best_valid_score": float(result["best_valid_score"]), "valid_metric": metric,
        "epochs_run": result["epochs_run"], "epoch_budget": budget,
        "best_epoch": best_epoch, "epochs_to_best": None if best_epoch is None else best_epoch + 1,
        "early_stopped": result["epochs_run"] < budget,
        "seconds_per_epoch": result["seconds_per_epoch"], "train_seconds": result["train_seconds"],
        "params": result["params"], "checkpoint": result["checkpoint"],
        "settings": settings,
        "hyper": {k: _plain(resolved.get(k, config[k])) for k in _hyper_keys(model)
                  if k in resolved or k in config.final_config_dict},
    }
    test = entry["test"].get(metric)
    print(f"{prefix} {model} done: test {metric} {test if test is None else round(test, 4)}, "
          f"{entry['epochs_run']} epochs ({entry['seconds_per_epoch']:.2f} s/epoch), best at epoch "
          f"{entry['epochs_to_best']}", flush=True)
    return entry


def json_path(out, dataset):
    return os.path.join(out, f"{dataset}.json")


def load_results(path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a recbole-micro comparison file (format '{doc.get('format')}')")
    return doc


def save_results(doc, out):
    from recbole_micro.tuning import _atomic_write

    doc["updated"] = _now()
    path = json_path(out, doc["dataset"])
    _atomic_write(path, json.dumps(doc, indent=1) + "\n")
    return path


def run_comparison(dataset, models, epochs=None, tuned=None, overrides=None, config_files=None, out="results",
                   append=False, command=None):
    r"""Run ``models`` one after the other on ``dataset`` under one protocol; write JSON and page.

    ``epochs`` overrides the epoch budget of every model; ``tuned`` (tuning export paths) supplies each
    tuned model's best-on-validation parameters; ``overrides`` (``--key=value`` strings or a dict) apply
    to every model and win over tuned values. With ``append`` the runs are merged into an existing
    ``<out>/<dataset>.json`` (a model run again replaces its old entry). The JSON is saved after every
    model, so an interruption keeps the finished ones. Returns the results document.
    """
    from recbole_micro.tuning import _config_files, parse_overrides

    models = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    if not models:
        raise ConfigError("--models is empty: name at least one model, e.g. --models BPR,LightGCN,MICRO")
    fixed = parse_overrides(overrides)
    if epochs is not None:
        fixed["epochs"] = int(epochs)
    tuned = load_tuned(tuned) if not isinstance(tuned, dict) else tuned
    elsewhere = sorted(m for m in models if m in tuned and tuned[m].get("dataset") not in (None, dataset))
    if elsewhere:
        print(f"[compare] note: the tuned parameters of {', '.join(elsewhere)} were selected on another dataset",
              file=sys.stderr)
    unused = sorted(set(tuned) - set(models))
    if unused:
        print(f"[compare] note: tuning exports for {', '.join(unused)} are not used (not in --models)",
              file=sys.stderr)
    config_files = _config_files(config_files)
    path = json_path(out, dataset)
    if append and os.path.isfile(path) and load_results(path)["dataset"] != dataset:
        raise ConfigError(f"{path} holds results for another dataset than {dataset}")
    mine, fresh = {}, not append
    doc = None
    for index, model in enumerate(models, 1):
        prefix = f"[compare {index}/{len(models)}]"
        config_dict = dict(tuned.get(model, {}).get("params", {}))
        config_dict.update(fixed)
        start = time.time()
        try:
            entry = run_model(model, dataset, config_dict, config_files, prefix)
        except KeyboardInterrupt:
            if mine:
                _merge_and_save(dataset, out, mine, command, fresh)
            raise
        except Exception as error:  # noqa: BLE001 - one failing model must not lose the others' results
            if not isinstance(error, RecboleMicroError):
                traceback.print_exc()
            print(f"{prefix} {model} FAILED: {error}", file=sys.stderr, flush=True)
            entry = {"model": model, "status": "failed", "error": f"{type(error).__name__}: {error}",
                     "train_seconds": time.time() - start}
        entry["overrides"] = _plain(fixed)
        entry["tuned_from"] = {k: v for k, v in tuned[model].items() if k != "params"} if model in tuned else None
        entry["command"] = command
        entry["finished"] = _now()
        mine[model] = entry
        doc = _merge_and_save(dataset, out, mine, command, fresh)
        fresh = False
    return doc


def _merge_and_save(dataset, out, mine, command, fresh):
    r"""Save this job's runs: a fresh file on the first save of a non-append job, else merged into what is on
    disk now (re-read before each save, so jobs appending to the same dataset side by side keep each other's
    runs). Re-renders the page; returns the saved document."""
    path = json_path(out, dataset)
    if not fresh and os.path.isfile(path):
        doc = load_results(path)
    else:
        doc = {"format": FORMAT, "dataset": dataset, "created": _now(), "order": [], "runs": {}}
    doc.setdefault("commands", [])
    if command and command not in doc["commands"]:
        doc["commands"].append(command)
    for model, entry in mine.items():
        doc["runs"][model] = entry
        if model not in doc["order"]:
            doc["order"].append(model)
    save_results(doc, out)
    write_page(doc, out)
    return doc


# --------------------------------------------------------------------------- the page

def _metric_key(metric, k):
    return f"{metric}@{k}"


def _fmt(value, digits=4):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ok_runs(doc):
    return [doc["runs"][m] for m in doc["order"] if doc["runs"].get(m, {}).get("status") == "ok"]


def _common_settings(runs):
    """``(common, differing)``: protocol settings equal across runs, and ``{key: {model: value}}`` otherwise."""
    common, differing = {}, {}
    for key in PROTOCOL_KEYS:
        values = {r["model"]: r.get("settings", {}).get(key) for r in runs}
        distinct = {json.dumps(v, sort_keys=True) for v in values.values()}
        if len(distinct) == 1:
            common[key] = next(iter(values.values()))
        else:
            differing[key] = values
    return common, differing


def _eval_every(common, runs):
    """Validation interval as RecBole applies it: min(eval_step, epochs) (a budget below eval_step validates once)."""
    step = common.get("eval_step")
    budgets = {r["epoch_budget"] for r in runs}
    if step is None or len(budgets) != 1:
        return step if step is not None else "?"
    return min(step, budgets.pop())


def _split_text(settings):
    if settings.get("benchmark_filename"):
        return (f"the dataset's fixed train/valid/test files (`benchmark_filename: {settings['benchmark_filename']}`), "
                "read identically for every model")
    split = (settings.get("eval_args") or {}).get("split")
    order = (settings.get("eval_args") or {}).get("order")
    return f"RecBole split `{split}` (order {order}) of one interaction file, with the same seed for every model"


def plot_results(doc, png_path):
    """Bar chart of test Recall@20 and NDCG@20 per model with the run settings as caption."""
    from matplotlib.figure import Figure

    runs = _ok_runs(doc)
    names = [r["model"] for r in runs]
    series = [("recall@20", "Recall@20", "#4C72B0"), ("ndcg@20", "NDCG@20", "#DD8452")]
    fig = Figure(figsize=(max(6.0, 1.3 * len(names) + 3), 4.4), dpi=110)
    ax = fig.add_axes([0.1, 0.2, 0.86, 0.7])
    width = 0.38
    for offset, (key, label, color) in enumerate(series):
        xs = [i + (offset - 0.5) * width for i in range(len(names))]
        values = [r["test"].get(key, 0.0) for r in runs]
        bars = ax.bar(xs, values, width, label=label, color=color)
        for bar, value in zip(bars, values):
            ax.annotate(f"{value:.4f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_ylabel("test score at the best validation epoch")
    ax.set_title(f"{doc['dataset']}: test Recall@20 and NDCG@20")
    ax.legend(loc="upper left", fontsize=8)
    ax.margins(y=0.15)
    fig.text(0.02, 0.02, "\n".join(textwrap.wrap(_caption(doc), 120)), fontsize=7, va="bottom", ha="left")
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path)
    return png_path


def _caption(doc):
    runs = _ok_runs(doc)
    if not runs:
        return "no finished run"
    common, differing = _common_settings(runs)
    epochs = ", ".join(f"{r['model']} {r['epochs_run']}/{r['epoch_budget']}" for r in runs)
    split = "fixed split files" if common.get("benchmark_filename") else "random split"
    caption = (f"{doc['dataset']}, {split}, seed {common.get('seed', 'per model')}, full ranking; selected on "
               f"valid {runs[0]['valid_metric']}, validation every {_eval_every(common, runs)} epochs, "
               f"patience {common.get('stopping_step', '?')}; epochs run/budget: {epochs}.")
    if differing:
        caption += f" Settings differ across models: {', '.join(differing)}."
    return caption


def render_page(doc, png_name=None, out="results"):
    """The Markdown page of a results document (pure function of the JSON)."""
    dataset = doc["dataset"]
    runs = _ok_runs(doc)
    failed = [doc["runs"][m] for m in doc["order"] if doc["runs"][m].get("status") != "ok"]
    lines = [f"# {dataset}: MICRO and RecBole baselines under one protocol", "",
             f"Generated by `recbole_micro/compare.py` from `{dataset}.json` (last run {doc.get('updated', '?')}); "
             "regenerate the page alone with the `--from-json` command below. Every number on this page comes "
             "from these runs, except the clearly marked published reference numbers.", ""]
    if dataset == "baby":
        lines += ["> **Data note.** The Amazon Baby interactions are real, but the item image/text features are "
                  "**reconstructed stand-ins** rebuilt from the real kNN-10 item graphs, not the original CNN / "
                  "sentence-transformer features (see `../shared/data/README.md`). Absolute numbers are therefore "
                  "not comparable with published ones.", ""]
    lines += ["## Results", ""]
    if runs:
        metric_cols = [(split, m, k) for split in ("test", "valid") for m in METRICS for k in CUTOFFS]
        head = (["model"] + [f"{split} {SHORT[m]}@{k}" for split, m, k in metric_cols]
                + ["s/epoch", "epochs run / budget", "epochs to best", "parameters"])
        best = {}
        for split, m, k in metric_cols:
            values = [r[split].get(_metric_key(m, k)) for r in runs]
            values = [v for v in values if v is not None]
            best[(split, m, k)] = max(values) if values else None
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
        for r in runs:
            cells = [f"**{r['model']}**" if r["model"] == "MICRO" else r["model"]]
            for split, m, k in metric_cols:
                value = r[split].get(_metric_key(m, k))
                text = _fmt(value)
                cells.append(f"**{text}**" if value is not None and value == best[(split, m, k)] and len(runs) > 1
                             else text)
            stop = " (early stop)" if r.get("early_stopped") else ""
            cells += [f"{r['seconds_per_epoch']:.2f}", f"{r['epochs_run']} / {r['epoch_budget']}{stop}",
                      _fmt(r.get("epochs_to_best")), f"{r['params']:,}"]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "R = Recall, N = NDCG, P = Precision. Test columns are measured once, at each model's best "
                  "validation epoch; bold marks the best per column. s/epoch = training wall time (including the "
                  "periodic validation) divided by epochs run, on the machine that ran it; parameters = trainable "
                  "parameters (MICRO's include the raw item features, which it fine-tunes like the reference).", ""]
        if png_name:
            lines += [f"![test Recall@20 and NDCG@20 per model]({png_name})", "", f"*Figure: {_caption(doc)}*", ""]
    else:
        lines += ["No finished run yet.", ""]
    if failed:
        lines += ["Failed runs:", ""] + [f"- {r['model']}: {r.get('error')}" for r in failed] + [""]
    lines += _protocol_section(doc, runs)
    lines += _settings_section(runs)
    if dataset == "baby":
        lines += _reference_section()
    lines += _reproduce_section(doc, out)
    return "\n".join(lines).rstrip() + "\n"


def _protocol_section(doc, runs):
    if not runs:
        return []
    common, differing = _common_settings(runs)
    budgets = sorted({r["epoch_budget"] for r in runs})
    budget = str(budgets[0]) if len(budgets) == 1 else "differs per model (see the table)"
    metric = runs[0]["valid_metric"]
    lines = [
        "## Protocol", "",
        "The same for every model (the plugin's `properties/overall.yaml`, overridden only where stated):", "",
        f"- **Split:** {_split_text(common or runs[0]['settings'])}.",
        f"- **Seed:** {common.get('seed', 'differs')} (`reproducibility: {common.get('reproducibility')}`).",
        f"- **Training:** RecBole's trainer, batches of {common.get('train_batch_size', '?')} (user, positive, "
        f"negative) triples, negatives `{common.get('train_neg_sample_args')}`.",
        f"- **Epoch budget:** {budget}; validation every {_eval_every(common, runs)} epochs; early stopping "
        f"after {common.get('stopping_step', '?')} validations without improvement of valid `{metric}`. Each "
        "model's epochs actually run and the epoch of its best validation are in the table: a model stopped by "
        "the budget rather than by early stopping may be under-trained.",
        f"- **Selection:** the checkpoint with the best valid `{metric}`; test is evaluated once on it (selection "
        "never looks at test).",
        f"- **Evaluation:** full ranking over all items (`mode: {(common.get('eval_args') or {}).get('mode')}`), "
        f"each user's training items masked (and, on test, the validation items); metrics "
        f"{common.get('metrics')} at {common.get('topk')}, averaged over users with at least one held-out item.",
        "- **Metric definitions (RecBole):** Recall@K = |hits in top K| / |user's held-out items|; "
        "Precision@K = |hits in top K| / K; NDCG@K = DCG@K / IDCG@K with binary relevance, DCG@K = "
        "Σ_{hits at rank r ≤ K} 1/log2(r+1) and IDCG@K the DCG of min(K, |held-out items|) hits ranked first — "
        "the standard NDCG. The MICRO/LATTICE reference code computes IDCG over the retrieved hits only, "
        "which reads higher; its NDCG numbers are not comparable with these.",
    ]
    if differing:
        lines.append("- **Not identical across models:** " + "; ".join(
            f"`{k}`: " + ", ".join(f"{m} {json.dumps(v)}" for m, v in values.items())
            for k, values in differing.items()) + ".")
    return lines + [""]


def _settings_section(runs):
    if not runs:
        return []
    lines = ["## Model settings", "", "| model | hyper-parameters | source |", "|---|---|---|"]
    for r in runs:
        params = ", ".join(f"`{k}={v}`" for k, v in (r.get("hyper") or {}).items())
        tuned = r.get("tuned_from")
        source = (f"tuned: best valid trial {tuned['trial']} of `{tuned['source']}`" if tuned
                  else "defaults (RecBole's model yaml + the plugin's)")
        extra = {k: v for k, v in (r.get("overrides") or {}).items()
                 if k not in ("data_path", "checkpoint_dir", "state", "show_progress", "log_wandb")}
        if extra:
            source += "; overrides " + ", ".join(f"`{k}={v}`" for k, v in extra.items())
        lines.append(f"| {r['model']} | {params} | {source} |")
    return lines + [""]


def _reference_section():
    lines = ["## Published reference numbers — NOT from this run", "",
             f"Source: {REFERENCE_BABY['source']}. Different split, the original item features and other "
             "training code: compare the *ordering and ratios* between models, not absolute values, with the "
             "table above.", "", "| model (published) | Recall@20 | NDCG@20 |", "|---|---:|---:|"]
    for name, recall, ndcg in REFERENCE_BABY["rows"]:
        lines.append(f"| {name} | {_fmt(recall)} | {_fmt(ndcg)} |")
    return lines + [""]


def _reproduce_section(doc, out="results"):
    lines = ["## Reproduce", "", "Runs that produced the JSON (append runs merge into it):", "", "```bash"]
    lines += doc.get("commands") or ["# (no command recorded)"]
    lines += ["```", "", "Re-render this page and the chart from the JSON without training:", "", "```bash",
              f"python run_compare.py --dataset {doc['dataset']} --from-json"
              + ("" if os.path.normpath(out) == "results" else f" --out {shlex.quote(out)}"), "```", ""]
    return lines


def write_page(doc, out):
    r"""Write ``<out>/<dataset>.md`` and ``<out>/<dataset>.png`` from a results document; returns both paths."""
    from recbole_micro.tuning import _atomic_write

    dataset = doc["dataset"]
    png_path = os.path.join(out, f"{dataset}.png")
    png_name = None
    if _ok_runs(doc):
        plot_results(doc, png_path)
        png_name = os.path.basename(png_path)
    md_path = os.path.join(out, f"{dataset}.md")
    _atomic_write(md_path, render_page(doc, png_name, out))
    return md_path, (png_path if png_name else None)


# --------------------------------------------------------------------------- command line

def build_parser(prog="run_compare.py"):
    parser = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False,
        description="Run several models on one dataset under the same split, seed, evaluator and epoch budget, "
        "and write <out>/<dataset>.md (table + chart) and <out>/<dataset>.json. Extra --key=value arguments "
        "are config overrides applied to every model.",
    )
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (default: the embedded ml-100k-mm)")
    parser.add_argument("--models", default="BPR,LightGCN,NGCF,MICRO",
                        help="comma-separated model names (default BPR,LightGCN,NGCF,MICRO)")
    parser.add_argument("--epochs", type=int, default=None, help="epoch budget for every model (default: the config's)")
    parser.add_argument("--tuned", default=None,
                        help="comma-separated tuning exports (run_hyper.py --output_file): each model's best-on-valid "
                        "parameters")
    parser.add_argument("--config_files", default=None, help="yaml config files for every model, comma-separated")
    parser.add_argument("--out", default="results", help="output folder (default results/)")
    parser.add_argument("--append", action="store_true",
                        help="merge into an existing <out>/<dataset>.json instead of starting a new one")
    parser.add_argument("--from-json", "--from_json", dest="from_json", nargs="?", const="", default=None,
                        metavar="FILE", help="only re-render the page from a results JSON (default <out>/<dataset>.json)")
    return parser


def run(args, overrides, prog="run_compare.py", argv=None):
    if args.dataset is None and args.from_json:
        args.dataset = load_results(args.from_json)["dataset"]
    if args.dataset is None:
        from recbole_micro.data.default import DEFAULT_DATASET

        args.dataset = DEFAULT_DATASET
    if args.from_json is not None:
        path = args.from_json or json_path(args.out, args.dataset)
        if not os.path.isfile(path):
            raise ConfigError(f"{path} does not exist: run the comparison first (without --from-json)")
        doc = load_results(path)
        md, png = write_page(doc, args.out)
        print(f"[compare] wrote {md}" + (f" and {png}" if png else ""))
        return doc
    command = "python " + " ".join([prog] + [shlex.quote(a) for a in (argv if argv is not None else [])])
    try:
        doc = run_comparison(args.dataset, args.models, args.epochs, args.tuned, overrides, args.config_files,
                             args.out, args.append, command)
    except KeyboardInterrupt:
        print(f"\n[compare] interrupted: finished models are kept in {json_path(args.out, args.dataset)}; "
              f"add the rest later with --append", file=sys.stderr)
        sys.exit(130)
    print(f"[compare] wrote {os.path.join(args.out, args.dataset + '.md')}, .png and .json")
    return doc


def main(argv=None, prog="run_compare.py"):
    from recbole_micro.cli import standalone

    return standalone(build_parser, run, prog, argv)
