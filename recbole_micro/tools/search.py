r"""Hyper-parameter search for MICRO and RecBole's models: RecBole's ``HyperTuning`` (hyperopt) or Ray Tune.

Every trial is one ``quick_start.objective_function`` run — trained with early stopping on the
validation split, then evaluated on test at its best validation epoch — so the search *selects on
validation* and only reports test (MMRec picks its "best" setting by test score; we do not). Each
trial is recorded in the export (``export.TuningExport``) as it finishes; the space's values and every
trial's parameters are typed against the model's configuration (``values.typed_params``) first.

A seeded exhaustive or random search proposes the same points in the same order whatever the trials
return, so N jobs can split it (``shard="K/N"``: the K-th of every N proposals, each job its own export)
and a last run of the whole search takes their trials over (``reuse``) instead of training them again.
"""

import json
import os
import re
import sys
import time

from recbole_micro.checkpoint import check_run_checkpoint, claim_checkpoint, resume_point
from recbole_micro.compat import hyperopt_rstate
from recbole_micro import raytune
from recbole_micro.errors import ConfigError, RecboleMicroError
from recbole_micro.quick_start import objective_function
from recbole_micro.tools.export import TuningExport, output_paths, trial_entry
from recbole_micro.tools.files import claimed, config_file_list, now, one_line, params_text, plain
from recbole_micro.tools.progress import validation_lines
from recbole_micro.tools.space import check_space, find_params_file, ray_space, read_hyper_file, space_size
from recbole_micro.tools.values import known_keys, parse_overrides, resolve_config, typed_params

ALGOS = ("exhaustive", "random", "bayes")
TOOLS = ("hyperopt", "ray")


class SearchFailed(RecboleMicroError):
    """Every trial of a search failed (the export lists each error)."""


def default_output(model, dataset):
    """The export stem used when ``--output_file`` is not given."""
    return os.path.join("hyper_results", f"{model}-{dataset}")


def _announce(entry, total, metric):
    head = f"[tune] trial {entry['trial']}{f'/{total}' if total else ''} {params_text(entry['params'])}"
    if entry["status"] != "ok":
        print(f"{head}: FAILED ({entry.get('error')})", flush=True)
        return
    test = entry["test"].get(metric)
    print(f"{head}: valid {metric} {entry['best_valid_score']:.4f}, test {metric} "
          f"{test if test is None else round(test, 4)} ({entry.get('seconds') or 0:.1f} s, "
          f"{entry.get('epochs_run')} epochs)", flush=True)


def _run_trial(base, params, config_files, known, checkpoint=None, resume=None, progress=None):
    """One objective run with ``params`` over the fixed config; returns a trial entry (failures recorded).
    ``checkpoint``/``resume``: the trial's best-checkpoint name and the file to continue it from;
    ``progress``: called after each validation (RecBole's ``callback_fn``)."""
    sys.argv = sys.argv[:1]
    start = time.time()
    try:
        params = typed_params(plain(params), known, "trial parameters")
        result = objective_function(dict(base, **params), config_files, checkpoint_file=checkpoint, resume=resume,
                                    callback_fn=progress)
    except Exception as error:  # noqa: BLE001 - a failed setting is a result of the search
        return trial_entry(plain(params), seconds=time.time() - start, error=one_line(error))
    return trial_entry(params, result, seconds=time.time() - start)


def previous_trials(json_path, header, option="--resume"):
    r"""``(finished trials, running trial or None)`` of an earlier run of the same search (``--resume``).

    The earlier export must be of the same model, dataset, space, fixed config and training seed: its
    trials are then results of this search, reused instead of trained again (failed ones are retried),
    and the trial it was training when it stopped is continued from its checkpoint.
    """
    from recbole_micro.tools.export import load_export

    if not os.path.isfile(json_path):
        return [], None
    doc = load_export(json_path)
    differ = [key for key in ("model", "dataset", "space", "fixed_config", "seed") if doc.get(key) != header.get(key)]
    if differ:
        raise ConfigError(f"{option}: {json_path} is the export of another search ({', '.join(differ)} differ); "
                          f"pass {'another --output_file or drop --resume to start this search afresh' if option == '--resume' else 'exports of this search only'}")
    running = doc.get("running")
    if not (isinstance(running, dict) and isinstance(running.get("params"), dict)
            and isinstance(running.get("checkpoint"), str)):
        running = None
    # "earlier": trials an interrupted resume had not proposed again yet (export.TuningExport)
    return [t for t in doc["trials"] + doc.get("earlier", []) if t.get("status") == "ok"], running


def _trial_checkpoint(base, model, number):
    """A trial's best-checkpoint path, fixed and claimed before it trains (``checkpoint.claim_checkpoint``: unique
    also when another search started in the same second)."""
    stamp = time.strftime("%b-%d-%Y_%H-%M-%S")
    return claim_checkpoint(os.path.join(os.path.abspath(base.get("checkpoint_dir") or "saved"),
                                         f"{model}-trial{number}-{stamp}.pth"))


def parse_shard(shard, algo="exhaustive", tool="hyperopt", early_stop=0):
    r"""``(K, N)`` from ``"K/N"`` (1 ≤ K ≤ N), or None; one-line ``ConfigError`` where shards would not split
    one search: Bayesian proposals (and the no-progress stop) depend on the trials' results, and Ray Tune
    runs its own parallel trials."""
    if shard is None or shard == "":
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(shard))
    k, n = (int(match[1]), int(match[2])) if match else (0, 0)
    if not 1 <= k <= n:
        raise ConfigError(f"--shard must be K/N with 1 <= K <= N (job K of N splitting the search, e.g. 1/2), "
                          f"got '{shard}'")
    if tool != "hyperopt" or algo == "bayes" or early_stop:
        what = ("--tool ray (run one Ray search instead)" if tool != "hyperopt" else "--algo bayes" if algo == "bayes"
                else "--early_stop")
        raise ConfigError(f"--shard splits an exhaustive or random hyperopt search, whose proposals do not depend "
                          f"on the trials' results; not with {what}")
    return k, n


def reused_trials(paths, header):
    r"""The finished trials of other exports of the same search (``reuse``: its shards, or a copy from another
    machine), each checked as ``--resume`` checks the search's own export."""
    if isinstance(paths, str):
        paths = [p for p in paths.split(",") if p.strip()]
    trials = []
    for path in paths or []:
        json_path = output_paths(path.strip())[0]
        if not os.path.isfile(json_path):
            raise ConfigError(f"--reuse: {json_path} does not exist; pass the .json exports of the same search "
                              f"(e.g. its --shard jobs' --output_file)")
        trials += previous_trials(json_path, header, option="--reuse")[0]
    return trials


def _reused(previous, params):
    """The earlier trial with exactly ``params`` (removed from ``previous``), or None."""
    for index, trial in enumerate(previous):
        if trial["params"] == plain(params):
            return {k: v for k, v in previous.pop(index).items() if k != "trial"}
    return None


def _hyperopt_search(export, spec, base, config_files, known, algo, max_evals, early_stop, seed, previous=(),
                     running=None, shard=None):
    from hyperopt import STATUS_FAIL, STATUS_OK, Trials, fmin
    from hyperopt.exceptions import AllTrialsFailed
    from recbole.trainer import HyperTuning

    bigger = export.doc["valid_metric_bigger"]
    metric = export.doc["valid_metric"]
    reusable = list(previous)
    unfinished = [running] if running else []

    class RecordingHyperTuning(HyperTuning):
        """RecBole's HyperTuning whose trials are recorded in the export as they finish (with ``shard``
        ``(K, N)``: the K-th of every N proposals; the others are another job's and count as failed here)."""

        proposals = 0

        def trial(self, params):
            self.proposals += 1
            if shard and (self.proposals - 1) % shard[1] != shard[0] - 1:
                return {"status": STATUS_FAIL, "loss": 1e30}
            earlier = _reused(reusable, typed_params(plain(params), known, "trial parameters"))
            if earlier is not None:
                earlier["reused"] = True  # finished by an earlier run of this search (--resume) or a shard (--reuse)
                entry = export.add(earlier)
            else:
                typed = typed_params(plain(params), known, "trial parameters")
                checkpoint, resume = None, None
                if unfinished and unfinished[0]["params"] == plain(typed):  # the trial an interruption stopped
                    checkpoint = unfinished.pop()["checkpoint"]  # checked by tune_model: inside checkpoint_dir
                    resume = resume_point(checkpoint)
                    print(f"[tune] continuing {params_text(typed)} from "
                          f"{resume or 'the start (no checkpoint was written)'}", flush=True)
                checkpoint = checkpoint or _trial_checkpoint(base, base["model"], len(export.trials) + 1)
                export.start(typed, checkpoint)
                progress = validation_lines(f"[tune] trial {len(export.trials) + 1}/{self.shard_total} "
                                            f"{params_text(typed)}", metric)
                entry = export.add(_run_trial(base, params, self.fixed_config_file_list, known, checkpoint, resume,
                                              progress))
            _announce(entry, self.shard_total, metric)
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
    tuner.shard_total = len(range(shard[0] - 1, int(tuner.max_evals), shard[1])) if shard else int(tuner.max_evals)
    export.write()
    # RecBole's HyperTuning.run, without its progress bar, and with the no-progress stop only when asked
    # for (it would cut an exhaustive grid short). hyperopt 0.2.5 looks the best trial up even with
    # return_argmin=False: with every trial failed that raises AllTrialsFailed, reported by tune_model.
    try:
        fmin(tuner.trial, tuner.space, algo=tuner.algo, max_evals=int(tuner.max_evals), trials=Trials(),
             early_stop_fn=tuner.early_stop_fn if early_stop else None, show_progressbar=False,
             return_argmin=False, rstate=hyperopt_rstate(seed))
    except AllTrialsFailed:
        pass


def _ray_trainable(config, base=None, config_files=None, known=None, cwd=None, checkpoint_root=None):
    """A Ray Tune function trainable: one objective run in a Ray worker, reported once."""
    if cwd:
        os.chdir(cwd)
    base = dict(base or {})
    if checkpoint_root:  # a folder per trial: RecBole names checkpoints by model and second only
        base["checkpoint_dir"] = os.path.join(checkpoint_root, raytune.trial_id())
    entry = _run_trial(base, config, config_files, known)
    report = {"record": json.dumps(entry)}
    if entry["status"] == "ok":
        report["best_valid_score"] = entry["best_valid_score"]
        report.update({f"valid_{k}": v for k, v in entry["valid"].items()})
        report.update({f"test_{k}": v for k, v in entry["test"].items()})
    raytune.report(report)


def _ray_search(export, spec, base, config_files, known, algo, max_evals, ray_options):
    ray, tune = raytune.require()
    from ray.tune import Callback

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
        from ray.tune.search.hyperopt import HyperOptSearch
        from recbole.trainer import HyperTuning

        search_alg = HyperOptSearch(HyperTuning._build_space_from_dict(spec), metric="best_valid_score",
                                    mode="max" if bigger else "min", random_state_seed=ray_options.get("seed"))
        space = None
    else:
        space = ray_space(spec, algo)
    saved = ray_options.get("checkpoint_dir") or base.get("checkpoint_dir") or "saved"
    checkpoint_root = os.path.abspath(os.path.join(saved, "ray_trials"))
    trainable = tune.with_parameters(_ray_trainable, base=base, config_files=config_files, known=known,
                                     cwd=os.getcwd(), checkpoint_root=checkpoint_root)
    results_dir = os.path.abspath(ray_options.get("local_dir") or os.path.join(saved, "ray_results"))
    try:
        tune.run(
            trainable, config=space, search_alg=search_alg,
            num_samples=1 if algo == "exhaustive" else (max_evals or 10),
            resources_per_trial={"cpu": ray_options.get("cpus_per_trial", 1),
                                 "gpu": ray_options.get("gpus_per_trial", 0)},
            **raytune.run_options(results_dir),
            callbacks=[RecordCallback()], raise_on_failed_trial=False,
            verbose=ray_options.get("verbose", 0),
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
               ray_options=None, command=None, resume=False, shard=None, reuse=()):
    r"""Search ``params_file`` for ``model`` on ``dataset``; returns the export document.

    ``resume`` (hyperopt): the finished trials of an interrupted run of the same search, found in its
    export, are reused instead of trained again; with a seeded search the proposals are the same, so
    the resumed search ends with the export of an uninterrupted one. ``shard`` ``"K/N"`` (exhaustive or
    random): train only the K-th of every N proposals, so N jobs with their own exports split the search;
    ``reuse``: exports of the same search (e.g. those shards) whose finished trials are taken over as
    ``resume`` takes its own, so a last run without ``shard`` writes the whole search's export.

    ``overrides`` (``--key=value`` strings or a dict) apply to every trial; the searched parameters take
    precedence over them. The export is rewritten after each trial; on KeyboardInterrupt it is written
    with status ``interrupted`` and the interrupt is re-raised. ``SearchFailed`` when every trial failed.
    """
    if algo not in ALGOS:
        raise ConfigError(f"--algo must be one of {', '.join(ALGOS)}, got '{algo}'")
    if tool not in TOOLS:
        raise ConfigError(f"--tool must be hyperopt or ray, got '{tool}'")
    shard = parse_shard(shard, algo, tool, early_stop)
    if reuse and tool == "ray":
        raise ConfigError("--reuse works with --tool hyperopt only (Ray Tune keeps its own experiment state)")
    if tool == "ray" and not raytune.available():  # before anything is read or written
        raise raytune.RayNotInstalled(raytune.missing_message())
    params_path = find_params_file(params_file or model)
    spec = read_hyper_file(params_path)
    if algo == "exhaustive" and space_size(spec) is None:
        raise ConfigError(f"{params_path}: exhaustive search needs 'choice' parameters only; use --algo random "
                          f"or bayes for continuous ranges")
    fixed = parse_overrides(overrides)
    config_files = config_file_list(config_files)
    base = dict(fixed, model=model, dataset=dataset)
    for key in ("data_path", "checkpoint_dir"):  # Ray workers may run elsewhere: make paths absolute
        if isinstance(base.get(key), str):
            base[key] = os.path.abspath(base[key])
    config = resolve_config(model, dataset, config_files, base)
    base["checkpoint_dir"] = os.path.abspath(config["checkpoint_dir"])  # also when a yaml config file sets it
    known = known_keys(config)
    spec = check_space(spec, known, params_path)  # before any trial: unknown keys, mistyped or unsafe values
    shadowed = [name for group in spec.values() for name in group if name in fixed]
    if shadowed:
        print(f"[tune] note: searched parameters override the fixed values of {', '.join(shadowed)}",
              file=sys.stderr)
    header = {
        "model": model, "dataset": dataset, "tool": tool, "algo": algo, "params_file": params_path,
        "space": plain(spec), "valid_metric": config["valid_metric"].lower(),
        "valid_metric_bigger": bool(config["valid_metric_bigger"]), "fixed_config": plain(fixed),
        "config_files": config_files, "seed": config["seed"], "epochs": config["epochs"],
        "command": command or "", "started": now(),
    }
    if shard:
        header["shard"] = f"{shard[0]}/{shard[1]}"
    if resume and tool == "ray":
        raise ConfigError("--resume works with --tool hyperopt only (Ray Tune keeps its own experiment state)")
    json_path = output_paths(output_file or default_output(model, dataset))[0]
    # one search per export at a time: a second would train the same trials and overwrite the first's record
    with claimed(json_path, f"another search is writing {json_path} (its run_hyper.py is still running); wait "
                            f"for it to end, or pass another --output_file"):
        previous, running = previous_trials(json_path, header) if resume else ([], None)
        export = TuningExport(json_path, header, earlier=previous)
        previous += reused_trials(reuse, header)
        if running:  # the export names the unfinished trial's checkpoint: it must be where this search writes
            running["checkpoint"] = check_run_checkpoint(running["checkpoint"], base["checkpoint_dir"],
                                                         f"tuning export {json_path}")
        export.write()
        print(f"[tune] {model} on {dataset}: {tool} {algo} search over {params_path}; selecting on valid "
              f"{export.doc['valid_metric']}; export {export.json_path}", flush=True)
        try:
            if tool == "ray":
                options = dict(ray_options or {})
                options.setdefault("seed", seed)
                options.setdefault("checkpoint_dir", os.path.abspath(config["checkpoint_dir"]))
                _ray_search(export, spec, base, config_files, known, algo, max_evals, options)
            else:
                _hyperopt_search(export, spec, base, config_files, known, algo, max_evals, early_stop, seed, previous,
                                 running, shard)
        except KeyboardInterrupt:
            export.finish("interrupted")
            raise
        except BaseException:
            export.finish("failed")
            raise
        trials = export.trials
        if trials and all(t["status"] != "ok" for t in trials):
            export.finish("failed")
            raise SearchFailed(f"all {len(trials)} trial(s) of the {model} search failed (first: "
                               f"{trials[0].get('error')}); {export.text_path} lists every trial's error")
        export.finish("finished")
        return export.doc
