r"""Hyper-parameter search for MICRO and RecBole's models: RecBole's ``HyperTuning`` (hyperopt) or Ray Tune.

Every trial is one ``quick_start.objective_function`` run — trained with early stopping on the
validation split, then evaluated on test at its best validation epoch — so the search *selects on
validation* and only reports test (MMRec picks its "best" setting by test score; we do not).

The export is written after every trial (and on Ctrl-C), so an interrupted search keeps what it
finished: ``<out>.json`` (machine-readable, read by ``compare.py --tuned``) and ``<out>.txt``
(readable). Both list all trials and mark the best one by the validation metric.

Search spaces are ``.hyper`` files in RecBole's format, one parameter a line, ``#`` comments allowed::

    learning_rate choice [1e-4, 5e-4, 1e-3, 5e-3]
    lambda_coeff uniform 0.5,1.0
    knn_k quniform 5,20,5
    reg_weight loguniform -11.5,-4.6        # natural-log bounds, as in hyperopt / RecBole

``--params_file MICRO`` finds the shipped ``properties/hyper/MICRO.hyper``; a path works too.

Usage (see ``run_hyper.py``)::

    python run_hyper.py --model MICRO --dataset baby --algo random --max_evals 20 --epochs=100
    python run_hyper.py --model LightGCN --dataset baby --tool ray --ray_workers 2
"""

import argparse
import ast
import datetime
import json
import math
import os
import shlex
import sys
import time

from recbole_micro.errors import ConfigError
from recbole_micro.quick_start import objective_function
from recbole_micro.utils import PROPERTIES_DIR

HYPER_DIR = os.path.join(PROPERTIES_DIR, "hyper")
PARAM_TYPES = ("choice", "uniform", "quniform", "loguniform")
ALGOS = ("exhaustive", "random", "bayes")
FORMAT = "recbole-micro tuning export 1"


# --------------------------------------------------------------------------- search spaces

def find_params_file(name_or_path):
    """A ``.hyper`` file: an existing path, or a shipped space by name (``MICRO`` → ``hyper/MICRO.hyper``)."""
    if os.path.isfile(name_or_path):
        return os.path.abspath(name_or_path)
    name = os.path.basename(name_or_path)
    name = name[: -len(".hyper")] if name.endswith(".hyper") else name
    shipped = os.path.join(HYPER_DIR, f"{name}.hyper")
    if os.path.isfile(shipped):
        return shipped
    available = ", ".join(shipped_spaces()) or "none"
    raise ConfigError(f"params file '{name_or_path}' not found: give a path to a .hyper file or one of the "
                      f"shipped spaces ({available})")


def shipped_spaces():
    """Names of the search spaces shipped in ``properties/hyper/``."""
    if not os.path.isdir(HYPER_DIR):
        return []
    return sorted(f[: -len(".hyper")] for f in os.listdir(HYPER_DIR) if f.endswith(".hyper"))


def read_hyper_file(path):
    r"""Parse a ``.hyper`` file into RecBole's ``params_dict`` layout ``{type: {name: value}}``.

    ``choice`` values are Python literals (lists); ``uniform`` / ``loguniform`` take ``low,high`` and
    ``quniform`` ``low,high,q`` (loguniform bounds are natural logs, as in hyperopt).
    """
    spec = {}
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 3 or parts[1] not in PARAM_TYPES:
                raise ConfigError(f"{path}:{number}: expected '<name> <{'|'.join(PARAM_TYPES)}> <values>', "
                                  f"got '{line}'")
            name, kind, text = parts[0], parts[1], "".join(parts[2:])
            try:
                if kind == "choice":
                    value = ast.literal_eval(text)
                    if not isinstance(value, (list, tuple)) or not value:
                        raise ValueError("a non-empty list is needed")
                    value = list(value)
                else:
                    value = [float(v) for v in text.split(",")]
                    if len(value) != (3 if kind == "quniform" else 2):
                        raise ValueError(f"{kind} takes {'low,high,q' if kind == 'quniform' else 'low,high'}")
            except (ValueError, SyntaxError) as error:
                raise ConfigError(f"{path}:{number}: bad values '{text}' for {name} ({error})") from None
            if any(name in group for group in spec.values()):
                raise ConfigError(f"{path}:{number}: parameter '{name}' is defined twice")
            spec.setdefault(kind, {})[name] = value
    if not spec:
        raise ConfigError(f"{path}: no parameters found")
    return spec


def space_size(spec):
    """Number of grid points of an all-``choice`` space (None when a parameter is continuous)."""
    if set(spec) - {"choice"}:
        return None
    return math.prod(len(v) for v in spec["choice"].values())


def ray_space(spec, algo):
    """The search space for Ray Tune: grid_search for ``exhaustive``, samplers for ``random``."""
    from ray import tune

    if algo == "exhaustive":
        return {name: tune.grid_search(list(values)) for name, values in spec["choice"].items()}
    space = {}
    for kind, params in spec.items():
        for name, v in params.items():
            if kind == "choice":
                space[name] = tune.choice(list(v))
            elif kind == "uniform":
                space[name] = tune.uniform(v[0], v[1])
            elif kind == "quniform":
                space[name] = tune.quniform(v[0], v[1], v[2])
            else:  # hyperopt's loguniform takes log bounds, Ray's the values themselves
                space[name] = tune.loguniform(math.exp(v[0]), math.exp(v[1]))
    return space


# --------------------------------------------------------------------------- the export

def _plain(value):
    """JSON-safe copy: numpy scalars → Python numbers, tuples → lists, unknowns → str."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def trial_entry(params, result=None, seconds=None, error=None):
    """One trial of the export: its parameters, valid/test metrics and cost (or its error)."""
    entry = {"params": _plain(params), "status": "ok" if error is None else "failed"}
    if error is not None:
        entry["error"] = error
        entry["seconds"] = seconds
        return entry
    entry.update({
        "best_valid_score": float(result["best_valid_score"]),
        "valid": _plain(result.get("best_valid_result") or {}),
        "test": _plain(result.get("test_result") or {}),
        "epochs_run": result.get("epochs_run"),
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


def _atomic_write(path, text):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class TuningExport:
    r"""All trials of one search, rewritten to ``<out>.json`` / ``<out>.txt`` after each change."""

    def __init__(self, output_file, header):
        self.json_path, self.text_path = output_paths(output_file)
        self.doc = dict(header, format=FORMAT, status="running", trials=[], best=None)

    @property
    def trials(self):
        return self.doc["trials"]

    def add(self, entry):
        entry = dict(entry, trial=len(self.trials) + 1)
        self.trials.append(entry)
        self.write()
        return entry

    def finish(self, status):
        self.doc["status"] = status
        self.doc["finished"] = _now()
        self.write()

    def write(self):
        best = best_trial(self.trials, self.doc.get("valid_metric_bigger", True))
        self.doc["best"] = None if best is None else {
            k: best.get(k) for k in ("trial", "params", "best_valid_score", "valid", "test", "checkpoint")
        }
        _atomic_write(self.json_path, json.dumps(self.doc, indent=1) + "\n")
        _atomic_write(self.text_path, self.text())

    def text(self):
        d = self.doc
        metric = d.get("valid_metric", "valid score")
        best = d["best"]
        lines = [
            f"{d.get('model')} on {d.get('dataset')}: {d.get('tool')} {d.get('algo')} search over "
            f"{d.get('params_file')}",
            f"status: {d['status']}, {len(self.trials)} trial(s); selection metric: {metric} on the validation "
            f"split ({'higher' if d.get('valid_metric_bigger', True) else 'lower'} is better); test reported at "
            f"the best validation epoch",
            f"command: {d.get('command', '')}",
            "",
        ]
        keys = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "precision@10", "precision@20")
        for trial in self.trials:
            mark = "*" if best and trial["trial"] == best["trial"] else " "
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in trial["params"].items())
            lines.append(f"{mark} trial {trial['trial']}: {params}")
            if trial["status"] != "ok":
                lines.append(f"    FAILED: {trial.get('error')}")
                continue
            for split, name in (("valid", "valid"), ("test", "test ")):
                values = trial.get(split) or {}
                lines.append(f"    {name}: " + "  ".join(f"{k} {values[k]:.4f}" for k in keys if k in values))
            best_epoch = trial.get("best_epoch")
            lines.append(f"    {metric} (valid) {trial['best_valid_score']:.4f}; epochs to best "
                         f"{'-' if best_epoch is None else best_epoch + 1} of {trial.get('epochs_run')} run; "
                         f"{trial.get('seconds') or 0:.1f} s")
        lines.append("")
        if best:
            params = ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items())
            lines.append(f"* best by valid {metric}: trial {best['trial']} ({params}): valid "
                         f"{best['best_valid_score']:.4f}, test {metric} {best['test'].get(metric, float('nan')):.4f}")
        else:
            lines.append("no finished trial yet")
        return "\n".join(lines) + "\n"


def load_export(path):
    """A tuning export (the ``.json``; a ``.txt`` or stem path finds its ``.json`` sibling)."""
    json_path = output_paths(path)[0] if not path.endswith(".json") else path
    with open(json_path, encoding="utf-8") as f:
        doc = json.load(f)
    if doc.get("format") != FORMAT:
        raise ConfigError(f"{json_path} is not a recbole-micro tuning export (format '{doc.get('format')}')")
    return doc


def _now():
    return datetime.datetime.now().isoformat(timespec="seconds")


# --------------------------------------------------------------------------- running trials

def _config_files(value):
    if not value:
        return None
    if isinstance(value, (list, tuple)):
        return [os.path.abspath(v) for v in value]
    return [os.path.abspath(v) for v in value.replace(",", " ").split()]


def parse_overrides(overrides):
    r"""``['--key=value', ...]`` (or a dict) → config dict, values typed as RecBole types command-line ones."""
    if isinstance(overrides, dict):
        return dict(overrides)
    from recbole.config import Config as RecBoleConfig

    parsed = {}
    for arg in overrides or []:
        if not (arg.startswith("--") and "=" in arg):
            raise ConfigError(f"config override '{arg}' is not written --key=value")
        key, value = arg[2:].split("=", 1)
        parsed[key] = value
    return RecBoleConfig._convert_config_dict(None, parsed)


def resolve_config(model, dataset, config_files, fixed):
    """The run's Config (validates model and dataset names up front; gives the selection metric)."""
    from recbole_micro.config import Config

    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv; overrides travel in the dict
    return Config(model=model, dataset=dataset, config_file_list=config_files, config_dict=dict(fixed))


def _params_str(params):
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _announce(entry, total, metric):
    head = f"[tune] trial {entry['trial']}{f'/{total}' if total else ''} {_params_str(entry['params'])}"
    if entry["status"] != "ok":
        print(f"{head}: FAILED ({entry.get('error')})", flush=True)
        return
    test = entry["test"].get(metric)
    print(f"{head}: valid {metric} {entry['best_valid_score']:.4f}, test {metric} "
          f"{test if test is None else round(test, 4)} ({entry.get('seconds') or 0:.1f} s, "
          f"{entry.get('epochs_run')} epochs)", flush=True)


def _run_trial(base, params, config_files):
    """One objective run with ``params`` over the fixed config; returns a trial entry (failures recorded)."""
    sys.argv = sys.argv[:1]
    start = time.time()
    try:
        result = objective_function(dict(base, **params), config_files)
    except (Exception,) as error:  # noqa: BLE001 - a failed setting is a result of the search
        return trial_entry(params, seconds=time.time() - start, error=f"{type(error).__name__}: {error}")
    return trial_entry(params, result, seconds=time.time() - start)


def _hyperopt_search(export, spec, base, config_files, algo, max_evals, early_stop, seed):
    from hyperopt import STATUS_FAIL, STATUS_OK, Trials, fmin
    from recbole.trainer import HyperTuning

    bigger = export.doc["valid_metric_bigger"]
    metric = export.doc["valid_metric"]

    class RecordingHyperTuning(HyperTuning):
        """RecBole's HyperTuning whose trials are recorded in the export as they finish."""

        def trial(self, params):
            entry = export.add(_run_trial(base, params, self.fixed_config_file_list))
            _announce(entry, self.max_evals, metric)
            if entry["status"] != "ok":
                return {"status": STATUS_FAIL, "loss": 1e30}
            score = entry["best_valid_score"]
            return {"loss": -score if bigger else score, "status": STATUS_OK}

    tuner = RecordingHyperTuning(
        objective_function, params_dict=spec, fixed_config_file_list=config_files, algo=algo,
        max_evals=max_evals or 100, early_stop=early_stop or 10,
    )
    if algo == "exhaustive" and max_evals:
        tuner.max_evals = min(int(tuner.max_evals), max_evals)
    export.doc["max_evals"] = int(tuner.max_evals)
    export.write()
    # RecBole's HyperTuning.run, without its progress bar and argmin (which fails when all trials fail),
    # and with the no-progress stop only when asked for (it would cut an exhaustive grid short).
    import numpy as np

    fmin(tuner.trial, tuner.space, algo=tuner.algo, max_evals=int(tuner.max_evals), trials=Trials(),
         early_stop_fn=tuner.early_stop_fn if early_stop else None, show_progressbar=False,
         return_argmin=False, rstate=np.random.default_rng(seed) if _new_hyperopt() else np.random.RandomState(seed))


def _new_hyperopt():
    import hyperopt

    return tuple(int(p) for p in hyperopt.__version__.split(".")[:3] if p.isdigit()) >= (0, 2, 7)


def _ray_trainable(config, base=None, config_files=None, cwd=None, checkpoint_root=None):
    """A Ray Tune function trainable: one objective run in a Ray worker, reported once."""
    from ray.air import session

    if cwd:
        os.chdir(cwd)
    base = dict(base or {})
    if checkpoint_root:  # a folder per trial: RecBole names checkpoints by model and second only
        base["checkpoint_dir"] = os.path.join(checkpoint_root, session.get_trial_id())
    entry = _run_trial(base, config, config_files)
    report = {"record": json.dumps(entry)}
    if entry["status"] == "ok":
        report["best_valid_score"] = entry["best_valid_score"]
        report.update({f"valid_{k}": v for k, v in entry["valid"].items()})
        report.update({f"test_{k}": v for k, v in entry["test"].items()})
    session.report(report)


def _ray_search(export, spec, base, config_files, algo, max_evals, ray_options):
    try:
        import ray
        from ray import tune
        from ray.tune import Callback
    except ImportError as error:
        raise ConfigError(f"--tool ray needs Ray Tune installed ({error}); pip install 'ray[tune]'") from None

    bigger = export.doc["valid_metric_bigger"]
    metric = export.doc["valid_metric"]
    total = space_size(spec) if algo == "exhaustive" else max_evals

    class RecordCallback(Callback):
        """Records each trial in the export as soon as it completes (or fails)."""

        def on_trial_complete(self, iteration, trials, trial, **info):
            record = (trial.last_result or {}).get("record")
            entry = json.loads(record) if record else trial_entry(trial.config, error="no result reported")
            _announce(export.add(entry), total, metric)

        def on_trial_error(self, iteration, trials, trial, **info):
            error = getattr(trial, "error_msg", None) or "trial raised an error (see the Ray log)"
            _announce(export.add(trial_entry(trial.config, error=str(error).strip().splitlines()[-1])),
                      total, metric)

    started = not ray.is_initialized()
    if started:
        init = {"include_dashboard": False, "log_to_driver": ray_options.get("log_to_driver", False)}
        if ray_options.get("address"):
            ray.init(address=ray_options["address"], **init)
        else:
            ray.init(num_cpus=ray_options.get("workers", 2), **init)
    search_alg = None
    if algo == "bayes":
        from recbole.trainer import HyperTuning
        from ray.tune.search.hyperopt import HyperOptSearch

        search_alg = HyperOptSearch(HyperTuning._build_space_from_dict(spec), metric="best_valid_score",
                                    mode="max" if bigger else "min", random_state_seed=ray_options.get("seed"))
        space = None
    else:
        space = ray_space(spec, algo)
    saved = ray_options.get("checkpoint_dir") or base.get("checkpoint_dir") or "saved"
    checkpoint_root = os.path.abspath(os.path.join(saved, "ray_trials"))
    trainable = tune.with_parameters(_ray_trainable, base=base, config_files=config_files, cwd=os.getcwd(),
                                     checkpoint_root=checkpoint_root)
    try:
        tune.run(
            trainable, config=space, search_alg=search_alg,
            num_samples=1 if algo == "exhaustive" else (max_evals or 10),
            resources_per_trial={"cpu": ray_options.get("cpus_per_trial", 1),
                                 "gpu": ray_options.get("gpus_per_trial", 0)},
            local_dir=os.path.abspath(ray_options.get("local_dir") or os.path.join(saved, "ray_results")), chdir_to_trial_dir=False,
            callbacks=[RecordCallback()], raise_on_failed_trial=False, verbose=ray_options.get("verbose", 0),
            name=f"{export.doc['model']}-{export.doc['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}",
        )
    except RuntimeError as error:
        # Ray 2.6 builds its ExperimentAnalysis through pyarrow once the search is over; without pyarrow
        # that last step fails, but every trial has been recorded by the callback already.
        if "pyarrow" not in str(error):
            raise
    finally:
        if started:
            ray.shutdown()


def tune_model(model, dataset, params_file=None, algo="exhaustive", max_evals=None, output_file=None,
               config_files=None, overrides=None, tool="hyperopt", early_stop=0, seed=2020,
               ray_options=None, command=None):
    r"""Search ``params_file`` for ``model`` on ``dataset``; returns the export document.

    ``overrides`` (``--key=value`` strings or a dict) apply to every trial; the searched parameters take
    precedence over them. The export is rewritten after each trial; on KeyboardInterrupt it is written
    with status ``interrupted`` and the interrupt is re-raised.
    """
    if algo not in ALGOS:
        raise ConfigError(f"--algo must be one of {', '.join(ALGOS)}, got '{algo}'")
    if tool not in ("hyperopt", "ray"):
        raise ConfigError(f"--tool must be hyperopt or ray, got '{tool}'")
    params_path = find_params_file(params_file or model)
    spec = read_hyper_file(params_path)
    if algo == "exhaustive" and space_size(spec) is None:
        raise ConfigError(f"{params_path}: exhaustive search needs 'choice' parameters only; use --algo random "
                          f"or bayes for continuous ranges")
    fixed = parse_overrides(overrides)
    config_files = _config_files(config_files)
    base = dict(fixed, model=model, dataset=dataset)
    for key in ("data_path", "checkpoint_dir"):  # Ray workers may run elsewhere: make paths absolute
        if isinstance(base.get(key), str):
            base[key] = os.path.abspath(base[key])
    config = resolve_config(model, dataset, config_files, base)
    searched = [name for group in spec.values() for name in group]
    unknown = [name for name in searched if name not in config.final_config_dict]
    if unknown:
        print(f"[tune] warning: {', '.join(unknown)} not set anywhere in {model}'s configuration; check the "
              f"spelling (the value is passed on, but the model may ignore it)", file=sys.stderr)
    shadowed = [name for name in searched if name in fixed]
    if shadowed:
        print(f"[tune] note: searched parameters override the fixed values of {', '.join(shadowed)}",
              file=sys.stderr)
    output_file = output_file or os.path.join("hyper_results", f"{model}-{dataset}")
    export = TuningExport(output_file, {
        "model": model, "dataset": dataset, "tool": tool, "algo": algo, "params_file": params_path,
        "space": spec, "valid_metric": config["valid_metric"].lower(),
        "valid_metric_bigger": bool(config["valid_metric_bigger"]), "fixed_config": _plain(fixed),
        "config_files": config_files, "seed": config["seed"], "epochs": config["epochs"],
        "command": command or "", "started": _now(),
    })
    export.write()
    print(f"[tune] {model} on {dataset}: {tool} {algo} search over {params_path}; selecting on valid "
          f"{export.doc['valid_metric']}; export {export.json_path}", flush=True)
    try:
        if tool == "ray":
            options = dict(ray_options or {})
            options.setdefault("seed", seed)
            options.setdefault("checkpoint_dir", os.path.abspath(config["checkpoint_dir"]))
            _ray_search(export, spec, base, config_files, algo, max_evals, options)
        else:
            _hyperopt_search(export, spec, base, config_files, algo, max_evals, early_stop, seed)
    except KeyboardInterrupt:
        export.finish("interrupted")
        raise
    except BaseException:
        export.finish("failed")
        raise
    export.finish("finished")
    return export.doc


# --------------------------------------------------------------------------- command line

def build_parser(prog="run_hyper.py"):
    parser = argparse.ArgumentParser(
        prog=prog, allow_abbrev=False,
        description="Tune MICRO or any RecBole model with RecBole's HyperTuning (hyperopt) or Ray Tune. "
        "Trials select on the validation split; the export lists every trial and marks the best by "
        "validation. Extra --key=value arguments are config overrides applied to every trial.",
    )
    parser.add_argument("--model", "-m", default="MICRO", help="model name (default MICRO)")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (default: the embedded ml-100k-mm)")
    parser.add_argument("--params_file", default=None,
                        help="search space: a .hyper path or a shipped name "
                        f"({', '.join(shipped_spaces())}); default: the model's name")
    parser.add_argument("--algo", default="exhaustive", choices=ALGOS, help="search algorithm (default exhaustive)")
    parser.add_argument("--max_evals", type=int, default=None,
                        help="trials for random/bayes (default 100; hyperopt) or 10 (ray); caps an exhaustive grid")
    parser.add_argument("--output_file", default=None,
                        help="export stem: writes <stem>.json and <stem>.txt (default hyper_results/<model>-<dataset>)")
    parser.add_argument("--config_files", default=None, help="yaml config files, comma- or space-separated")
    parser.add_argument("--early_stop", type=int, default=0,
                        help="stop after N trials without improvement (hyperopt; default 0 = never)")
    parser.add_argument("--search_seed", type=int, default=2020,
                        help="seed of the search algorithm (default 2020; the training seed is --seed=N)")
    parser.add_argument("--ray_verbose", type=int, default=0, help="Ray Tune's own console output, 0-3 (default 0)")
    parser.add_argument("--tool", default="hyperopt", choices=("hyperopt", "ray"),
                        help="hyperopt: sequential, RecBole's HyperTuning (default); ray: Ray Tune, parallel")
    parser.add_argument("--ray_workers", type=int, default=2, help="CPUs of the local Ray instance (default 2)")
    parser.add_argument("--ray_address", default=None, help="address of a running Ray cluster (e.g. auto)")
    parser.add_argument("--cpus_per_trial", type=float, default=1, help="Ray resources per trial (default 1)")
    parser.add_argument("--gpus_per_trial", type=float, default=0, help="Ray GPUs per trial (default 0)")
    return parser


def run(args, overrides, prog="run_hyper.py", argv=None):
    """Run a search from parsed arguments; Ctrl-C ends with the export kept (exit status 130)."""
    if args.dataset is None:
        from recbole_micro.data.default import DEFAULT_DATASET

        args.dataset = DEFAULT_DATASET
    ray_options = {"workers": args.ray_workers, "address": args.ray_address,
                   "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial,
                   "verbose": args.ray_verbose}
    command = "python " + " ".join([prog] + [shlex.quote(a) for a in (argv if argv is not None else [])])
    try:
        doc = tune_model(args.model, args.dataset, args.params_file, args.algo, args.max_evals, args.output_file,
                         args.config_files, overrides, args.tool, args.early_stop, args.search_seed, ray_options, command)
    except KeyboardInterrupt:
        json_path, text_path = output_paths(args.output_file or os.path.join(
            "hyper_results", f"{args.model}-{args.dataset}"))
        print(f"\n[tune] interrupted: the finished trials are kept in {json_path} and {text_path}", file=sys.stderr)
        sys.exit(130)
    json_path, text_path = output_paths(args.output_file or os.path.join(
        "hyper_results", f"{args.model}-{args.dataset}"))
    print()
    print(open(text_path, encoding="utf-8").read())
    print(f"[tune] export: {json_path} (machine-readable), {text_path} (readable)")
    return doc


def main(argv=None, prog="run_hyper.py"):
    from recbole_micro.cli import standalone

    return standalone(build_parser, run, prog, argv)
