r"""The comparison results file ``<out>/<dataset>.json``: every run of every model and seed, and the
per-user sidecars ``<out>/<dataset>-per-user/<model>-seed<seed>.npz``.

Format 2 (``FORMAT``)::

    {"format": "recbole-micro comparison 2", "dataset": ..., "order": [models], "seeds": [seeds],
     "runs": {model: {"<seed>": run}}, "commands": [...], "created": ..., "updated": ...}

A run holds its ``status`` (``ok``, ``failed``, ``running`` — training, or killed while training — or
``interrupted``), its checkpoint path from the moment training starts (the resume point), valid and
test metrics of its best-validation checkpoint, cost, the resolved protocol settings, and
``per_user``: the sidecar holding each test user's token and per-user values (numpy ``.npz``, no
pickles). Format 1 files (one run per model, written before seeds existed) are read as format 2 with
the run's seed taken from its settings.
"""

import io
import json
import os
import re

import numpy as np

from recbole_micro.errors import ConfigError
from recbole_micro.tools.files import atomic_write, now

FORMAT = "recbole-micro comparison 2"
FORMAT_1 = "recbole-micro comparison 1"
UNFINISHED = ("running", "interrupted")
ROW_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.+=-]{0,63}")  # a model or variant name: also a file-name part


def json_path(out, dataset):
    """Where the results of ``dataset`` live under ``out``."""
    return os.path.join(out, f"{dataset}.json")


def new_doc(dataset):
    """An empty results document."""
    return {"format": FORMAT, "dataset": dataset, "created": now(), "order": [], "seeds": [], "runs": {},
            "commands": []}


def _upgrade(doc):
    """A format-1 document (``runs: {model: run}``) as format 2."""
    runs, seeds = {}, []
    for model, run in doc.get("runs", {}).items():
        seed = run.get("seed", (run.get("settings") or {}).get("seed"))
        run = dict(run, seed=seed)
        runs[model] = {str(seed): run}
        if seed not in seeds:
            seeds.append(seed)
    return dict(doc, format=FORMAT, runs=runs, seeds=seeds, upgraded_from=FORMAT_1)


def load_results(path):
    """A results document (format 2; format 1 upgraded in memory). One-line ``ConfigError`` otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid JSON ({error}); pass a file written by run_compare.py") from None
    found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
    if found == FORMAT_1:
        doc = _upgrade(doc)
    elif found != FORMAT:
        raise ConfigError(f"{path} is not a recbole-micro comparison file (format '{found}')")
    if not isinstance(doc.get("runs"), dict) or not isinstance(doc.get("order"), list):
        raise ConfigError(f"{path}: 'runs' and 'order' are missing or malformed; the file is damaged")
    doc.setdefault("seeds", [])
    doc.setdefault("commands", [])
    check_names(doc, path)
    return doc


def check_names(doc, path):
    r"""The names a results file holds that become file names or paths -- ``dataset`` (the page
    ``<out>/<dataset>.md``), row and model names, per-user sidecars -- must be plain names (sidecars: relative
    paths inside the JSON's folder): a shared file never decides where the program reads or writes."""
    from recbole_micro.data.convert import ConversionError, check_dataset_name

    try:
        check_dataset_name(doc.get("dataset"))
    except ConversionError:
        raise ConfigError(f"{path}: 'dataset' is {doc.get('dataset')!r}, not a plain dataset name (no '/', '..' or "
                          f"spaces); the file is damaged or crafted") from None
    for row, by_seed in doc["runs"].items():
        runs = list(by_seed.values()) if isinstance(by_seed, dict) else None
        if runs is None or not all(isinstance(r, dict) for r in runs):
            raise ConfigError(f"{path}: runs of '{row}' are malformed; the file is damaged")
        names = [row] + [r.get("model") for r in runs] + [r["name"] for r in runs if "name" in r]
        bad = [n for n in names if not (isinstance(n, str) and ROW_NAME.fullmatch(n))]
        if bad:
            raise ConfigError(f"{path}: row or model name {bad[0]!r} is not a plain name (letters, digits, _.+=-); "
                              f"the file is damaged or crafted")
        for run in runs:
            sidecar = (run.get("per_user") or {}).get("file")
            parts = os.path.normpath(sidecar).split(os.sep) if isinstance(sidecar, str) else [".."]
            if sidecar is not None and (os.path.isabs(sidecar) or ".." in parts or not sidecar.endswith(".npz")):
                raise ConfigError(f"{path}: per-user file {sidecar!r} of '{row}' is not a .npz path inside the "
                                  f"JSON's folder; the file is damaged or crafted")
    bad = [n for n in doc["order"] if not (isinstance(n, str) and ROW_NAME.fullmatch(n))]
    if bad:
        raise ConfigError(f"{path}: 'order' holds {bad[0]!r}, not a plain name; the file is damaged or crafted")


def save_results(doc, out):
    """Write ``doc`` atomically to ``<out>/<dataset>.json``; returns the path."""
    doc["updated"] = now()
    path = json_path(out, doc["dataset"])
    atomic_write(path, json.dumps(doc, indent=1) + "\n")
    return path


def row_name(run):
    """The row a run belongs to: its ``name`` (a labelled variant such as ``MICRO-full``), else its model."""
    return run.get("name") or run["model"]


def get_run(doc, name, seed):
    """The run of row ``name`` (a model, or a variant's name) with ``seed``, or None."""
    return doc["runs"].get(name, {}).get(str(seed))


def put_run(doc, run):
    """Add or replace the run of its row (``row_name``) and ``run["seed"]``, keeping row and seed order."""
    model, seed = row_name(run), run["seed"]
    doc["runs"].setdefault(model, {})[str(seed)] = run
    if model not in doc["order"]:
        doc["order"].append(model)
    if seed not in doc["seeds"]:
        doc["seeds"].append(seed)


def model_runs(doc, model, status=None):
    """The runs of row ``model`` (a model or a variant's name) in the document's seed order (only those with ``status`` if given)."""
    by_seed = doc["runs"].get(model, {})
    order = [str(s) for s in doc.get("seeds", [])]
    keys = [k for k in order if k in by_seed] + [k for k in by_seed if k not in order]
    runs = [by_seed[k] for k in keys]
    return [r for r in runs if status is None or r.get("status") == status]


def ok_models(doc):
    """Rows (models and named variants) with at least one finished run, in order."""
    return [m for m in doc["order"] if model_runs(doc, m, "ok")]


def per_user_file(dataset, model, seed):
    """The sidecar of one run, relative to the JSON's folder."""
    return os.path.join(f"{dataset}-per-user", f"{model}-seed{seed}.npz")


def save_per_user(base_dir, relative, values):
    r"""Write ``{"users": tokens, metric: values}`` as a compressed ``.npz`` (float32 values, str tokens)."""
    arrays = {"users": np.asarray(values["users"]).astype(str)}
    arrays.update({k: np.asarray(v, dtype=np.float32) for k, v in values.items() if k != "users"})
    path = os.path.join(base_dir, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)
    return path


def load_per_user(base_dir, run):
    """``{"users": tokens, metric: values}`` of a run's sidecar, or None when it has none (or it is gone)."""
    info = run.get("per_user") or {}
    if not info.get("file"):
        return None
    path = os.path.join(base_dir, info["file"])
    if not os.path.isfile(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
