"""What the plugin's pipeline adds to RecBole's own models (issue 13, target 3): BPR and LightGCN trained and tested
through ``run_recbole_micro`` (the function behind ``run_recbole_micro.py``) and through RecBole's ``run_recbole``,
with the identical config on the same converted Amazon Baby data.

    .venv/bin/python benchmarks/pipeline_overhead.py                       # 10 epochs, 2 rounds (~8 min)
    .venv/bin/python benchmarks/pipeline_overhead.py --epochs 5 --rounds 3

The config both pipelines get is the plugin's resolved protocol (``properties/overall.yaml`` and the dataset's
yaml: seed, epochs, batch size, validation every ``eval_step`` epochs, metrics, split files, evaluation batch
size, ...), passed explicitly as a config dict, so RecBole's defaults do not differ from the plugin's; the
plugin also gets ``train_sampler: interaction`` (RecBole's per-interaction sampling, which RecBole's pipeline
uses); RecBole's run gets the usual ``torch.load(weights_only=False)`` fix, without which it cannot reload its
best checkpoint on torch >= 2.6. Every run is its own process (``cwd`` a fresh folder: RecBole writes ``log/`` there); pipelines and
models alternate over the rounds and the table gives medians. Inside a run, ``Trainer.fit`` (training with
its validations) and the final ``Trainer.evaluate`` are timed; "setup" is the rest (config, dataset, model).
Writes section ``pipeline_overhead`` of ``benchmarks/RESULTS.md`` unless ``--no-write``.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _common import REPO, baby_benchmark, load_average, machine, median, report, table  # noqa: E402

MODELS = ("BPR", "LightGCN")
PLUGIN_ONLY = ("modalities", "missing_feature", "eval_candidates", "last_checkpoint_step", "train_sampler")
TARGET = 0.05


def protocol(model, data_path, epochs):
    """The plugin's resolved values of every key its overall.yaml and the dataset's yaml set."""
    import yaml

    from recbole_micro.config import Config

    sys.argv = sys.argv[:1]
    keys = set()
    for file in (os.path.join(REPO, "properties", "overall.yaml"), os.path.join(data_path, "baby", "baby.yaml")):
        with open(file, encoding="utf-8") as f:
            keys |= set(yaml.safe_load(f) or {})
    config = Config(model, "baby", config_dict={"data_path": data_path, "epochs": epochs})
    return {key: config[key] for key in sorted(keys) if key in config.final_config_dict}


def child(spec):
    from _common import child_setup

    child_setup()
    import torch
    from recbole.trainer import Trainer

    torch.set_num_threads(spec["threads"])
    seconds = {"fit": 0.0, "evaluate": 0.0}
    fit, evaluate = Trainer.fit, Trainer.evaluate

    def timed_fit(self, *args, **kwargs):
        start, self._in_fit = time.perf_counter(), True
        try:
            return fit(self, *args, **kwargs)
        finally:
            seconds["fit"] += time.perf_counter() - start
            self._in_fit = False

    def timed_evaluate(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return evaluate(self, *args, **kwargs)
        finally:
            if not getattr(self, "_in_fit", False):
                seconds["evaluate"] += time.perf_counter() - start

    Trainer.fit, Trainer.evaluate = timed_fit, timed_evaluate
    config = dict(spec["config"])
    start = time.perf_counter()
    if spec["pipeline"] == "plugin":
        from recbole_micro.quick_start import run_recbole_micro

        result = run_recbole_micro(spec["model"], "baby", config_dict=config)
        test = result["test_result"]
    else:
        import functools

        from recbole.quick_start import run_recbole

        # RecBole 1.2.1 reloads its best checkpoint with torch.load's default, refused since torch 2.6: the usual
        # user fix, so that both pipelines save and reload the best model
        torch.load = functools.partial(torch.load, weights_only=False)

        result = run_recbole(model=spec["model"], dataset="baby", config_dict=config)
        test = result["test_result"]
    total = time.perf_counter() - start
    # fit's validations call evaluate too: only the final test evaluation is counted apart
    return {"total": total, "fit": seconds["fit"], "evaluate": seconds["evaluate"],
            "recall@20": float(test["recall@20"]), "ndcg@20": float(test["ndcg@20"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    started = baby_benchmark(parser, child, "micro-overhead-", subfolder="data")
    if started is None:
        return
    args, tmp, data_path = started
    configs = {}
    for model in MODELS:
        common = protocol(model, data_path, args.epochs)
        common.update({"data_path": data_path, "checkpoint_dir": os.path.join(tmp, "saved"), "state": "INFO",
                       "show_progress": False})
        configs[("plugin", model)] = dict(common, train_sampler="interaction")
        configs[("recbole", model)] = {k: v for k, v in common.items() if k not in PLUGIN_ONLY}
    load_start = load_average()
    results = {key: [] for key in configs}
    for round_index in range(args.rounds):
        pipelines = ("plugin", "recbole") if round_index % 2 == 0 else ("recbole", "plugin")
        for model in MODELS:
            for pipeline in pipelines:
                run_dir = tempfile.mkdtemp(prefix=f"{pipeline}-", dir=tmp)
                spec = {"pipeline": pipeline, "model": model, "config": configs[(pipeline, model)],
                        "threads": args.threads}
                start = time.perf_counter()
                r = run_child_in(run_dir, spec, args.threads)
                r["process"] = time.perf_counter() - start
                results[(pipeline, model)].append(r)
                print(f"round {round_index + 1} {model} {pipeline}: {r}", flush=True)
    rows, verdicts = [], []
    for model in MODELS:
        p, r = results[("plugin", model)], results[("recbole", model)]

        def m(rs, key):
            return median([x[key] for x in rs])

        overhead_total = m(p, "process") / m(r, "process") - 1
        overhead_fit = m(p, "fit") / m(r, "fit") - 1
        rows.append((model, f"{m(r, 'process'):.1f}", f"{m(p, 'process'):.1f}", f"{overhead_total:+.1%}",
                     f"{m(r, 'fit') / args.epochs:.2f}", f"{m(p, 'fit') / args.epochs:.2f}", f"{overhead_fit:+.1%}",
                     f"{m(r, 'total') - m(r, 'fit'):.1f}", f"{m(p, 'total') - m(p, 'fit'):.1f}",
                     f"{m(r, 'recall@20'):.4f} / {m(p, 'recall@20'):.4f}"))
        worst = max(overhead_total, overhead_fit)
        verdicts.append(f"{model} {'met' if worst <= TARGET else f'missed by {worst - TARGET:.1%} points'}")
    out = [
        f"Machine: {machine(args.threads, load_start)}; {load_average():.1f} at the end.", "",
        "Command: `.venv/bin/python benchmarks/pipeline_overhead.py" + (
            f" --epochs {args.epochs}" if args.epochs != 10 else "") + (
            f" --rounds {args.rounds}" if args.rounds != 2 else "") + (
            f" --threads {args.threads}" if args.threads != 2 else "") + "`", "",
        f"{args.epochs} epochs, validation every {configs[('plugin', MODELS[0])].get('eval_step')} epochs, then the "
        f"test evaluation; the same config dict for both pipelines (plus `train_sampler: interaction` for the "
        f"plugin); median of {args.rounds} rounds, each run its own process:", "",
        table(["model", "RecBole run s", "plugin run s", "plugin adds (run)", "RecBole s/epoch (fit)",
               "plugin s/epoch (fit)", "plugin adds (fit)", "RecBole setup+test s", "plugin setup+test s",
               "test Recall@20 RecBole / plugin"], rows), "",
        f"Target 3 (the plugin adds ≤ {TARGET:.0%}): " + "; ".join(verdicts) + ".",
    ]
    report("pipeline_overhead", "Plugin pipeline vs RecBole's (BPR, LightGCN on Baby)", out, write=not args.no_write)


def run_child_in(run_dir, spec, threads):
    """``run_child`` with this tree, in ``run_dir`` (RecBole writes ``log/`` into the working directory)."""
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), RECBOLE_MICRO_TREE=REPO,
               PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)], env=env,
                         capture_output=True, text=True, timeout=7200, cwd=run_dir)
    if out.returncode != 0:
        raise RuntimeError(f"child {spec['pipeline']} {spec['model']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
