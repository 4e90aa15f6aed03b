r"""Running a comparison: MICRO and RecBole's baselines on the same data, split, seeds and evaluator.

Every model runs through ``quick_start.run_recbole_micro`` — the plugin's ``properties/overall.yaml``
(protocol) applies to all of them, the dataset's fixed split is read once per run from the same files,
and each run is selected on validation and tested at its best validation epoch. With ``seeds`` every
model runs once per seed; each run also stores its per-user test values (``per_user.PerUserValues``)
for the paired tests of the page.

Runs survive interruption: a run is recorded in the JSON (status ``running``, its checkpoint name
fixed up front) before it trains; its trainer writes ``<checkpoint>-last.pth`` every ``eval_step``
epochs. ``resume=True`` keeps the finished (model, seed) runs of the JSON and continues a ``running``
or ``interrupted`` one from the newer of its ``-last`` and best checkpoints, so a comparison can span
several sittings.
"""

import contextlib
import json
import os
import re
import sys
import time

from recbole_micro.checkpoint import check_run_checkpoint, claim_checkpoint, resume_point
from recbole_micro.errors import Busy, ConfigError, RecboleMicroError
from recbole_micro.tools.export import load_export
from recbole_micro.tools.files import claimed, config_file_list, locked, now, one_line, plain
from recbole_micro.tools.page import PROTOCOL_KEYS, contrastive_default, write_page
from recbole_micro.tools.progress import epoch_lines
from recbole_micro.tools.results import (
    UNFINISHED, get_run, json_path, load_results, new_doc, per_user_file, put_run, save_per_user, save_results,
)
from recbole_micro.tools.space import HYPER_DIR, read_hyper_file
from recbole_micro.tools.trial_run import announce as announce_trial
from recbole_micro.tools.trial_run import trial_result
from recbole_micro.tools.values import check_model, known_keys, parse_overrides, resolve_config, typed_params

class ComparisonFailed(RecboleMicroError):
    """Every run of a comparison job failed (the results JSON and the page list each error)."""


PER_USER_METRICS = ("recall@20", "ndcg@20")  # stored per test user for the paired tests
VARIANT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.+=-]{0,63}")  # a row name that is also safe in file names


def load_tuned(files):
    r"""``{model: {"params", "source", "trial", "best_valid_score", "dataset"}}`` from tuning exports: each
    model's trial with the best *validation* score (recomputed from the trials). The parameters are the
    file's data, typed against the model's configuration by ``run_comparison`` before use."""
    if isinstance(files, str):
        files = [f for f in files.split(",") if f]
    tuned = {}
    for path in files or []:
        doc = load_export(path)
        best = doc["best"]
        if doc.get("shard"):  # its best is over part of the search only
            raise ConfigError(f"{path}: the export of shard {doc['shard']} of a search; run the whole search with "
                              f"run_hyper.py --reuse <every shard's .json> and pass its export")
        if not best:
            raise ConfigError(f"{path}: the tuning export has no finished trial to take parameters from")
        if doc["model"] in tuned:
            raise ConfigError(f"{path}: a second tuning export for {doc['model']} (first: "
                              f"{tuned[doc['model']]['source']}); pass one per model")
        tuned[doc["model"]] = {"params": best["params"], "source": path, "trial": best["trial"],
                               "best_valid_score": best["best_valid_score"], "dataset": doc.get("dataset")}
    return tuned


def _hyper_keys(model, config):
    """Names of the model's searched parameters (from its shipped .hyper file), for the settings table; the
    learning rate too unless nothing is trained by gradient (RecBole's traditional models: EASE, ItemKNN, ...)."""
    from recbole.utils import ModelType

    path = os.path.join(HYPER_DIR, f"{model}.hyper")
    keys = [] if config["MODEL_TYPE"] == ModelType.TRADITIONAL else ["learning_rate"]
    if os.path.isfile(path):
        keys += [k for group in read_hyper_file(path).values() for k in group if k not in keys]
    return keys


def per_user_metrics(config, per_user=PER_USER_METRICS):
    """The metrics of ``per_user`` a run of ``config`` can store per test user (full ranking, within its topk)."""
    mode = (config["eval_args"] or {}).get("mode")
    full = (mode.get("test") if isinstance(mode, dict) else mode) == "full"  # per-user values need full ranking
    return [m for m in per_user if full and m.split("@")[0] in [x.lower() for x in config["metrics"]]
            and int(m.split("@")[1]) <= max(config["topk"])]


def run_model(model, dataset, config_dict, config_files=None, prefix="[compare]", checkpoint_file=None,
              resume=None, per_user=PER_USER_METRICS, label=""):
    r"""Train and test one model; returns its result entry (metrics, cost, resolved protocol settings) and,
    under ``"per_user_values"``, its per-user test values (not part of the JSON)."""
    from recbole_micro.quick_start import run_recbole_micro

    config = resolve_config(model, dataset, config_files, config_dict)
    print(f"{prefix} {model}{label} on {dataset}: {'resuming from ' + resume if resume else 'training'} (budget "
          f"{config['epochs']} epochs, validating every {config['eval_step']}, patience {config['stopping_step']})",
          flush=True)
    with epoch_lines(f"{prefix} {model}{label}", config["epochs"], config["valid_metric"].lower()):
        sys.argv = sys.argv[:1]
        result = run_recbole_micro(model=model, dataset=dataset, config_file_list=config_files,
                                   config_dict=dict(config_dict), saved=True, resume=resume,
                                   checkpoint_file=checkpoint_file, per_user=per_user_metrics(config, per_user) or None)
    return run_entry(model, config, result, prefix, label)


def trial_entry_of(tuned, model, dataset, config_dict, config_files=None, prefix="[compare]",
                   per_user=PER_USER_METRICS, label="", row=None):
    r"""The result entry of this run taken from the tuning trial ``tuned`` names when that trial is this run
    (``tools.trial_run``), else ``None`` (the run is to be trained)."""
    from recbole_micro.quick_start import test_checkpoint

    config = resolve_config(model, dataset, config_files, config_dict)

    def rescore(checkpoint, metrics):
        sys.argv = sys.argv[:1]
        return test_checkpoint(model, dataset, config_files, dict(config_dict), checkpoint, metrics or None)

    result, note = trial_result(tuned, config, per_user_metrics(config, per_user), rescore)
    announce_trial(prefix, row or model, label, tuned, result, note, config["valid_metric"].lower())
    return None if result is None else run_entry(model, config, result, prefix, label)


def run_entry(model, config, result, prefix="[compare]", label=""):
    r"""A run's result entry (metrics, cost, resolved protocol settings) from its ``run_recbole_micro`` result;
    its per-user test values under ``"per_user_values"`` (not part of the JSON)."""
    budget, metric = result.get("epoch_budget") or config["epochs"], config["valid_metric"].lower()
    resolved = {}
    if result.get("record") and os.path.isfile(result["record"]):
        with open(result["record"], encoding="utf-8") as f:
            resolved = json.load(f).get("config", {})
    epochs_run = result.get("start_epoch", 0) + result["epochs_run"]  # all sittings together
    best_epoch = result.get("best_epoch")
    entry = {
        "model": model, "seed": config["seed"], "status": "ok",
        "valid": plain(result["best_valid_result"]), "test": plain(result["test_result"]),
        "best_valid_score": float(result["best_valid_score"]), "valid_metric": metric,
        "epochs_run": epochs_run, "epoch_budget": budget,
        "best_epoch": best_epoch, "epochs_to_best": None if best_epoch is None else best_epoch + 1,
        "early_stopped": epochs_run < budget,
        "seconds_per_epoch": result["seconds_per_epoch"], "train_seconds": result["train_seconds"],
        "params": result["params"], "checkpoint": result["checkpoint"],
        "settings": {k: plain(resolved.get(k, config[k])) for k in PROTOCOL_KEYS},
        "hyper": {k: plain(resolved.get(k, config[k])) for k in _hyper_keys(model, config)
                  if k in resolved or k in config.final_config_dict},
        "per_user_values": result.get("per_user"),
    }
    if contrastive_default(model) is not None:  # what MICRO's row measures, shown beside its name
        entry["contrastive_mode"] = plain(config["contrastive_mode"])
    test = entry["test"].get(metric)
    print(f"{prefix} {model}{label} done: test {metric} {test if test is None else round(test, 4)}, "
          f"{entry['epochs_run']} epochs ({entry['seconds_per_epoch']:.2f} s/epoch), best at epoch "
          f"{entry['epochs_to_best']}", flush=True)
    return entry


def _seed_list(seeds):
    if seeds is None or seeds == "":
        return None
    items = seeds.split(",") if isinstance(seeds, str) else list(seeds)
    try:
        parsed = [int(str(s).strip()) for s in items if str(s).strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers such as 123,2020,7, got '{seeds}'") from None
    if not parsed or len(set(parsed)) != len(parsed):
        raise ConfigError(f"--seeds must name distinct integers, e.g. 123,2020,7; got '{seeds}'")
    return parsed


def _checkpoint_name(config, row, seed):
    """The run's best-checkpoint path, fixed and claimed before training (``checkpoint.claim_checkpoint``: unique
    also when another job of the same row and seed started in the same second)."""
    stamp = time.strftime("%b-%d-%Y_%H-%M-%S")
    return claim_checkpoint(os.path.join(config["checkpoint_dir"], f"{row}-seed{seed}-{stamp}.pth"))


def _variant_name(name, models):
    """``name`` checked: one model only, a file-safe name that is not a model's own row."""
    if name is None:
        return None
    if len(models) != 1:
        raise ConfigError(f"--name labels the runs of one model; got --models {','.join(models)}: run each "
                          "variant as its own job")
    if not VARIANT_NAME.fullmatch(name) or name == models[0]:
        raise ConfigError(f"--name '{name}' must start with a letter, use only letters, digits and _.+=- (at most "
                          f"64), and differ from the model's name, e.g. --name {models[0]}-lambda1")
    return name


def run_comparison(dataset, models, epochs=None, tuned=None, overrides=None, config_files=None, out="results",
                   append=False, command=None, seeds=None, resume=False, name=None, retrain=False):
    r"""Run ``models`` one after the other on ``dataset`` under one protocol; write JSON and page.

    ``epochs`` overrides the epoch budget of every model; ``tuned`` (tuning export paths) supplies each
    tuned model's best-on-validation parameters; ``overrides`` (``--key=value`` strings or a dict) apply
    to every model and win over tuned values; ``seeds`` (``"123,2020,7"`` or a list) runs every model
    once per seed (default: the configured seed). With ``append`` the runs are merged into an existing
    ``<out>/<dataset>.json`` (a (model, seed) run again replaces its old entry); ``resume`` also keeps
    its finished runs and continues its unfinished one from its checkpoint. ``name`` (one model only)
    files the runs under that row instead of the model's, for a labelled variant (``MICRO-full``, a
    switch turned off) beside the model's own row. A tuned run on the search's own seed takes the search's
    best trial over when it is the same run (``tools.trial_run``: its checkpoint scored on test again, not
    trained twice); ``retrain`` trains it anyway. The JSON is saved when each run starts and ends, so an
    interruption keeps the finished ones. Returns the results document.
    """
    models = [m.strip() for m in (models.split(",") if isinstance(models, str) else models) if m.strip()]
    if not models:
        raise ConfigError("--models is empty: name at least one model, e.g. --models BPR,LightGCN,MICRO")
    for model in models:  # a misspelt name fails now, not after hours of the models before it
        check_model(model)
    name = _variant_name(name, models)
    fixed = parse_overrides(overrides)
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"--epochs is {epochs!r}; the epoch budget must be an integer >= 1 (0 or less would "
                              f"put untrained models on the page)")
        fixed["epochs"] = epochs
    seed_list = _seed_list(seeds)
    if seed_list and "seed" in fixed:
        raise ConfigError("give the seeds with --seeds only (a --seed=N override is also set)")
    config_files = config_file_list(config_files)
    tuned = load_tuned(tuned) if not isinstance(tuned, dict) else tuned
    params = {}
    for model in models:
        params[model] = {}
        if model in tuned:  # the export's values are data: typed against the model's configuration
            known = known_keys(resolve_config(model, dataset, config_files, fixed))
            params[model] = typed_params(tuned[model]["params"], known, tuned[model].get("source", "tuned"))
    elsewhere = sorted(m for m in models if m in tuned and tuned[m].get("dataset") not in (None, dataset))
    if elsewhere:
        print(f"[compare] note: the tuned parameters of {', '.join(elsewhere)} were selected on another dataset",
              file=sys.stderr)
    unused = sorted(set(tuned) - set(models))
    if unused:
        print(f"[compare] note: tuning exports for {', '.join(unused)} are not used (not in --models)",
              file=sys.stderr)
    path = json_path(out, dataset)
    if (append or resume) and os.path.isfile(path) and load_results(path)["dataset"] != dataset:
        raise ConfigError(f"{path} holds results for another dataset than {dataset}")
    job = _Job(dataset, out, command, fresh=not (append or resume), take_over=not retrain)
    plan = [(m, s) for m in models for s in (seed_list or [None])]
    entries = []
    for index, (model, seed) in enumerate(plan, 1):
        prefix = f"[compare {index}/{len(plan)}]"
        config_dict = dict(params[model])
        config_dict.update(fixed)
        if seed is not None:
            config_dict["seed"] = seed
        label = (f" ({name})" if name else "") + (f" seed {seed}" if seed_list and len(seed_list) > 1 else "")
        entries.append(job.run(model, seed, config_dict, config_files, prefix, tuned.get(model), fixed, resume,
                               label=label, name=name))
    if all(entry.get("status") == "failed" for entry in entries):  # exit status 2, as run_hyper's SearchFailed
        first = entries[0]
        raise ComparisonFailed(f"all {len(entries)} run(s) of this comparison failed (first: "
                               f"{first.get('name') or first['model']} seed {first['seed']}: {first.get('error')}); "
                               f"{path} lists every run's error")
    return job.doc


NOT_COMPARED = ("seed", "data_path", "checkpoint_dir", "state", "show_progress", "progress_every", "log_wandb")


def changed_values(previous, config_dict):
    r"""``{key: (then, now)}`` for the run's tuned and overridden values that the earlier run of the same row and
    seed recorded otherwise (its ``hyper``, ``settings`` or ``overrides``); keys it did not record, paths and
    presentation keys are not compared. Empty when ``--resume`` may keep or continue that run."""
    recorded = dict(previous.get("settings") or {})
    recorded.update(previous.get("hyper") or {})
    recorded.update(previous.get("overrides") or {})
    return {k: (recorded[k], v) for k, v in plain(config_dict).items()
            if k not in NOT_COMPARED and k in recorded and recorded[k] != v}


class _Job:
    r"""This job's runs, saved into ``<out>/<dataset>.json`` at each start and end of a run: a fresh file on
    the first save of a non-append job, else merged into what is on disk now (re-read before each save, so
    jobs appending to the same dataset side by side keep each other's runs). Re-renders the page."""

    def __init__(self, dataset, out, command, fresh, take_over=True):
        self.dataset, self.out, self.command, self.fresh = dataset, out, command, fresh
        self.take_over = take_over  # a tuned run may take the search's trial of its seed over (tools.trial_run)
        self.doc = None

    def on_disk(self):
        path = json_path(self.out, self.dataset)
        return load_results(path) if not self.fresh and os.path.isfile(path) else None

    def save(self, entry):
        with locked(json_path(self.out, self.dataset)):  # jobs side by side: one read-modify-write at a time
            doc = self.on_disk() or new_doc(self.dataset)
            if self.command and self.command not in doc["commands"]:
                doc["commands"].append(self.command)
            put_run(doc, entry)
            save_results(doc, self.out)
            write_page(doc, self.out)
        self.doc, self.fresh = doc, False
        return doc

    def run(self, model, seed, config_dict, config_files, prefix, tuned, fixed, resume, label="", name=None):
        row = name or model
        config = None
        try:
            config = resolve_config(model, self.dataset, config_files, config_dict)
        except Exception as error:  # noqa: BLE001 - reported as this run's failure below
            return self._failed(model, seed, prefix, error, time.time(), tuned, fixed, name)
        seed = config["seed"]
        previous = get_run(self.on_disk() or {"runs": {}}, row, seed) if resume else None
        changed = changed_values(previous, config_dict) if previous else None
        if changed:  # e.g. the tuning export's best point moved since: the earlier run is not this one
            print(f"{prefix} {row}{label}: the earlier run trained with other values ("
                  + ", ".join(f"{k}: {old!r} then, {new!r} now" for k, (old, new) in changed.items())
                  + "): trained again", flush=True)
            previous = None
        if previous and previous.get("status") == "ok":
            print(f"{prefix} {model}{label}: finished in an earlier sitting, kept", flush=True)
            self.doc = self.on_disk()
            return previous
        resume_file, checkpoint = None, None
        sittings, earlier_seconds = 1, 0.0
        if previous and previous.get("status") in UNFINISHED and previous.get("checkpoint"):
            # the JSON names the checkpoint to continue: it must lie where this run writes
            checkpoint = check_run_checkpoint(previous["checkpoint"], config["checkpoint_dir"],
                                              f"{json_path(self.out, self.dataset)}: run {row} seed {seed}")
            resume_file = resume_point(checkpoint)
            sittings = previous.get("sittings", 1) + 1
            earlier_seconds = previous.get("train_seconds") or 0.0
        base = {"model": model, **({"name": name} if name else {}), "seed": seed, "overrides": plain(fixed),
                "tuned_from": {k: v for k, v in tuned.items() if k != "params"} if tuned else None,
                "command": self.command, "sittings": sittings}
        if tuned and self.take_over and resume_file is None:  # the search's best trial may be this very run
            try:
                entry = trial_entry_of(tuned, model, self.dataset, config_dict, config_files, prefix, label=label,
                                       row=row)
            except RecboleMicroError as error:  # e.g. its checkpoint does not fit this dataset's ids
                print(f"{prefix} {row}{label}: trial {tuned['trial']} of {tuned['source']} is not taken over "
                      f"({error}): trained", file=sys.stderr, flush=True)
                entry = None
            except Exception as error:  # noqa: BLE001 - one failing model must not lose the others' results
                return self._failed(model, seed, prefix, error, time.time(), tuned, fixed, name)
            if entry is not None:
                return self._finish(entry, dict(base, from_trial={"source": tuned["source"], "trial": tuned["trial"]}),
                                    row, seed)
        checkpoint = checkpoint or _checkpoint_name(config, row, seed)
        with contextlib.ExitStack() as stack:
            try:  # a second job on the same JSON (started twice, side by side) leaves a run in training alone
                stack.enter_context(claimed(checkpoint, f"another job is training it (checkpoint {checkpoint})"))
            except Busy as busy:
                print(f"{prefix} {row}{label} seed {seed}: {busy}: skipped", flush=True)
                return previous
            started, started_text = time.time(), now()
            self.save(dict(base, status="running", checkpoint=checkpoint, started=started_text,
                           train_seconds=earlier_seconds))
            try:
                entry = run_model(model, self.dataset, config_dict, config_files, prefix, checkpoint_file=checkpoint,
                                  resume=resume_file, label=label)
            except KeyboardInterrupt:
                self.save(dict(base, status="interrupted", checkpoint=checkpoint, started=started_text,
                               train_seconds=earlier_seconds + time.time() - started))
                raise
            except Exception as error:  # noqa: BLE001 - one failing model must not lose the others' results
                return self._failed(model, seed, prefix, error, started, tuned, fixed, name)
            entry["train_seconds"] = earlier_seconds + entry["train_seconds"]
            return self._finish(entry, base, row, seed)

    def _finish(self, entry, base, row, seed):
        """Save a finished run: its per-user values into their file, its entry (with ``base``) into the JSON."""
        values = entry.pop("per_user_values", None)
        train_seconds = entry["train_seconds"]
        entry.update(base)
        entry["train_seconds"] = train_seconds
        if values is not None:
            relative = per_user_file(self.dataset, row, seed)
            save_per_user(self.out, relative, values)
            entry["per_user"] = {"file": relative, "metrics": [k for k in values if k != "users"],
                                 "users": int(len(values["users"]))}
        entry["finished"] = now()
        self.save(entry)
        return entry

    def _failed(self, model, seed, prefix, error, started, tuned, fixed, name=None):
        message = str(error) if isinstance(error, RecboleMicroError) else one_line(error)
        print(f"{prefix} {name or model} FAILED: {message}", file=sys.stderr, flush=True)
        entry = {"model": model, **({"name": name} if name else {}), "seed": seed, "status": "failed", "error": one_line(error),
                 "train_seconds": time.time() - started, "overrides": plain(fixed), "command": self.command,
                 "tuned_from": {k: v for k, v in tuned.items() if k != "params"} if tuned else None,
                 "finished": now()}
        self.save(entry)
        return entry
