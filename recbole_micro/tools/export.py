r"""The tuning export: every trial of one search, ``<out>.json`` (read by ``run_compare.py --tuned``) and
``<out>.txt`` (readable), rewritten after each trial so an interrupted search keeps what it finished.

Both list all trials with their valid and test metrics and mark the best one **by the validation
metric** (``best_trial``); test is reported, never used to select. Reading an export back
(``load_export``) recomputes the best trial from the trials themselves and only returns data: the
parameters it holds are checked by ``values.typed_params`` before they reach a configuration.
"""

import json
import os

from recbole_micro.errors import ConfigError
from recbole_micro.tools.files import atomic_write, now, params_text, plain

FORMAT = "recbole-micro tuning export 1"
TEXT_KEYS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@10", "precision@20")


def trial_entry(params, result=None, seconds=None, error=None):
    """One trial of the export: its parameters, valid/test metrics and cost (or its error)."""
    entry = {"params": plain(params), "status": "ok" if error is None else "failed"}
    if error is not None:
        entry["error"] = error
        entry["seconds"] = seconds
        return entry
    entry.update({
        "best_valid_score": float(result["best_valid_score"]),
        "valid": plain(result.get("best_valid_result") or {}),
        "test": plain(result.get("test_result") or {}),
        "epochs_run": None if result.get("epochs_run") is None  # every sitting of a continued trial
        else (result.get("start_epoch") or 0) + result["epochs_run"],
        "best_epoch": result.get("best_epoch"),
        "seconds": seconds if seconds is not None else result.get("train_seconds"),
        "params_count": result.get("params"),
        "checkpoint": result.get("checkpoint"),
    })
    return entry


def best_trial(trials, bigger=True):
    """The finished trial with the best validation score (the first of equals), or None."""
    best = None
    for trial in trials:
        if trial.get("status") != "ok":
            continue
        score = trial["best_valid_score"]
        if best is None or (score > best["best_valid_score"] if bigger else score < best["best_valid_score"]):
            best = trial
    return best


def output_paths(output_file):
    """``(json_path, text_path)`` of an export: ``x.json`` and ``x.txt`` for ``x``, ``x.json`` or ``x.txt``."""
    stem, ext = os.path.splitext(output_file)
    if ext not in (".json", ".txt"):
        stem = output_file
    return stem + ".json", stem + ".txt"


def summary(doc):
    """The ``best`` block of an export document: the validation winner's trial, parameters and scores."""
    best = best_trial(doc["trials"], doc.get("valid_metric_bigger", True))
    if best is None:
        return None
    return {k: best.get(k) for k in ("trial", "params", "best_valid_score", "valid", "test", "checkpoint")}


def export_text(doc):
    """The readable ``.txt`` of an export document."""
    metric = doc.get("valid_metric", "valid score")
    best = doc.get("best")
    trials = doc["trials"]
    lines = [
        f"{doc.get('model')} on {doc.get('dataset')}: {doc.get('tool')} {doc.get('algo')} search over "
        f"{doc.get('params_file')}" + (f" — shard {doc['shard']} (this job's part of the proposals; a run of the "
                                       f"whole search with --reuse takes them over)" if doc.get("shard") else ""),
        f"status: {doc.get('status')}, {len(trials)} trial(s); selection metric: {metric} on the validation "
        f"split ({'higher' if doc.get('valid_metric_bigger', True) else 'lower'} is better); test reported at "
        f"the best validation epoch",
        f"command: {doc.get('command', '')}",
        "",
    ]
    earlier = doc.get("earlier") or []
    if earlier:
        lines += [f"  {len(earlier)} finished trial(s) of an earlier run not proposed again yet (kept for --resume): "
                  + "; ".join(params_text(t["params"]) for t in earlier), ""]
    running = doc.get("running")
    if running:
        lines += [f"  trial {len(trials) + 1} running: {params_text(running['params'])}, since {running.get('started')}; "
                  f"checkpoint {running.get('checkpoint')} (--resume continues it)", ""]
    for trial in trials:
        mark = "*" if best and trial["trial"] == best["trial"] else " "
        reused = " (taken over from an earlier run or a shard of this search)" if trial.get("reused") else ""
        lines.append(f"{mark} trial {trial['trial']}: {params_text(trial['params'])}{reused}")
        if trial["status"] != "ok":
            lines.append(f"    FAILED: {trial.get('error')}")
            continue
        for split, name in (("valid", "valid"), ("test", "test ")):
            values = trial.get(split) or {}
            lines.append(f"    {name}: " + "  ".join(f"{k} {values[k]:.4f}" for k in TEXT_KEYS if k in values))
        best_epoch = trial.get("best_epoch")
        lines.append(f"    {metric} (valid) {trial['best_valid_score']:.4f}; epochs to best "
                     f"{'-' if best_epoch is None else best_epoch + 1} of {trial.get('epochs_run')} run; "
                     f"{trial.get('seconds') or 0:.1f} s")
    lines.append("")
    if best:
        test = (best.get("test") or {}).get(metric, float("nan"))
        lines.append(f"* best by valid {metric}: trial {best['trial']} ({params_text(best['params'])}): valid "
                     f"{best['best_valid_score']:.4f}, test {metric} {test:.4f}")
    elif any(t["status"] != "ok" for t in trials):
        lines.append(f"no finished trial: all {len(trials)} failed")
    else:
        lines.append("no finished trial yet")
    return "\n".join(lines) + "\n"


class TuningExport:
    r"""All trials of one search, rewritten to ``<out>.json`` / ``<out>.txt`` after each change."""

    def __init__(self, output_file, header, earlier=()):
        self.json_path, self.text_path = output_paths(output_file)
        self.doc = dict(header, format=FORMAT, status="running", trials=[], best=None)
        if earlier:  # an earlier run's finished trials (--resume), kept until proposed again: an interruption
            self.doc["earlier"] = [dict(t) for t in earlier]  # before that must not lose them

    @property
    def trials(self):
        return self.doc["trials"]

    def start(self, params, checkpoint):
        """Record the trial now training (``running``: its parameters and checkpoint, for ``--resume``)."""
        self.doc["running"] = {"params": plain(params), "checkpoint": checkpoint, "started": now()}
        self.write()

    def add(self, entry):
        entry = dict(entry, trial=len(self.trials) + 1)
        self.trials.append(entry)
        self.doc.pop("running", None)
        earlier = [t for t in self.doc.get("earlier", []) if t.get("params") != entry.get("params")]
        if earlier:
            self.doc["earlier"] = earlier
        else:
            self.doc.pop("earlier", None)
        self.write()
        return entry

    def finish(self, status):
        self.doc["status"] = status
        self.doc["finished"] = now()
        self.write()

    def write(self):
        self.doc["best"] = summary(self.doc)
        atomic_write(self.json_path, json.dumps(self.doc, indent=1) + "\n")
        atomic_write(self.text_path, export_text(self.doc))

    def text(self):
        return export_text(self.doc)


def load_export(path):
    r"""A tuning export (the ``.json``; a ``.txt`` or stem path finds its ``.json`` sibling), with its
    ``best`` recomputed from the trials by validation. One-line ``ConfigError`` for anything else."""
    json_path = path if path.endswith(".json") else output_paths(path)[0]
    if not os.path.isfile(json_path):
        raise ConfigError(f"tuning export {json_path} does not exist; pass the .json written by run_hyper.py "
                          f"--output_file")
    try:
        with open(json_path, encoding="utf-8") as f:
            doc = json.load(f)
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"{json_path} is not valid JSON ({error}); pass a tuning export written by "
                          f"run_hyper.py") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{json_path} is not a recbole-micro tuning export (format '{found}')")
    for key in ("trials", "earlier"):
        trials = doc.get(key, [] if key == "earlier" else None)
        if not isinstance(trials, list) or not all(
            isinstance(t, dict) and isinstance(t.get("params"), dict)
            and (t.get("status") != "ok" or isinstance(t.get("best_valid_score"), (int, float))) for t in trials
        ):
            raise ConfigError(f"{json_path}: '{key}' must be a list of trials with 'params' and, when ok, "
                              f"'best_valid_score'; the file is damaged: rerun the search")
    if not isinstance(doc.get("model"), str):
        raise ConfigError(f"{json_path}: the export names no model")
    doc["best"] = summary(doc)
    return doc
