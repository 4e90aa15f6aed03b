"""What each training-protocol difference does on Amazon Baby: MICRO trained as the reference code trains
(the plugin's defaults), and with each difference switched back to RecBole's, one at a time.

    .venv/bin/python benchmarks/protocol_ablation.py                      # 4 variants × 3 seeds × 20 epochs (hours)
    .venv/bin/python benchmarks/protocol_ablation.py --mode full --seeds 123   # + the exact contrastive loss, one seed
    .venv/bin/python benchmarks/protocol_ablation.py --smoke              # 1 epoch, seed 123, into a temp folder
    .venv/bin/python benchmarks/protocol_ablation.py --render             # rewrite the page from the JSON only

Training variants (``contrastive_mode`` from ``--mode``, default ``sampled``; everything else the
plugin's defaults):

* ``reference`` — ``train_sampler: user``, ``zero_grad_set_to_none: False``, ``init_scheme: reference``;
* ``train_sampler: interaction`` — RecBole's pass over every training interaction per epoch;
* ``zero_grad_set_to_none: True`` — torch >= 2.0's zero_grad (Adam skips parameters without gradient);
* ``init_scheme: xavier`` — xavier weights and zero biases for every linear layer too.

The fourth difference, ``test_mask_valid``, changes only the test ranking: every run evaluates its test
split both ways at each recorded epoch (the reference masks only the training items; RecBole also the
validation items), so it needs no training run of its own.

Recorded per run at epochs 5, 10, 15, 20 (``--at``): valid Recall@20 (RecBole's validation after the
epoch, ``eval_step`` = 5) and test Recall@20 under both masks, evaluated by a ``fit`` callback on the
model as it is at that epoch; plus the seconds of each training epoch. The JSON (``--json``) is
rewritten after every run and finished runs are skipped on a restart, so the measurement resumes
across sessions (an interrupted run is redone from its start). The markdown page (``--md``) is
rendered from the JSON after each run. The training loaders alone are timed once per JSON: one epoch
of iteration (users, positives, RecBole's negative sampling) for ``user`` vs ``interaction``.
"""

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine, table  # noqa: E402

VARIANTS = {
    "reference": {},
    "train_sampler: interaction": {"train_sampler": "interaction"},
    "zero_grad_set_to_none: True": {"zero_grad_set_to_none": True},
    "init_scheme: xavier": {"init_scheme": "xavier"},
}
MASKS = {"train": False, "train+valid": True}  # test ranking mask -> test_mask_valid
#: The official code on the shared Baby split after 5 epochs, seed 123 (issue 11): Recall@20.
OFFICIAL_5_EPOCHS = {"valid": 0.0785, "test": 0.0791}


# ------------------------------------------------------------------------------ results file
def load_results(path):
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {"runs": {}}


def save_results(results, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, path)  # an interruption never leaves a truncated file


def run_key(mode, variant, seed, epochs):
    return f"{mode}|{variant}|seed {seed}|{epochs} epochs"


# ------------------------------------------------------------------------------ one run
def test_loaders(config, test_data, train_dataset):
    """The test split ranked with both masks: {"train": reference mask, "train+valid": RecBole's}."""
    from recbole.data.dataloader import FullSortEvalDataLoader

    from recbole_micro.evaluation import apply_test_mask

    loaders = {}
    for name, mask_valid in MASKS.items():
        loader = FullSortEvalDataLoader(config, test_data._dataset, test_data._sampler, shuffle=False)
        loaders[name] = apply_test_mask({"test_mask_valid": mask_valid, "eval_args": config["eval_args"]},
                                        loader, train_dataset)
    return loaders


def train_one(data_path, mode, variant, seed, epochs, at, threads):
    """One training run; returns its record (metrics at the ``at`` epochs, seconds per epoch)."""
    import torch

    from recbole_micro.quick_start import build

    torch.set_num_threads(threads)
    config_dict = {
        "data_path": data_path, "checkpoint_dir": os.path.join(data_path, "saved"), "state": "ERROR",
        "show_progress": False, "seed": seed, "epochs": epochs, "eval_step": math.gcd(*at),  # validates at every recorded epoch
        "stopping_step": 1000, "contrastive_mode": mode,
        **VARIANTS[variant],
    }
    config, model, trainer, (train_data, valid_data, test_data) = build("MICRO", "baby", config_dict=config_dict,
                                                                        quiet=True)
    tests = test_loaders(config, test_data, train_data._dataset)
    record = {"variant": variant, "mode": mode, "seed": seed, "epochs": epochs, "valid": {}, "test": {m: {} for m in MASKS},
              "train_seconds": [], "settings": {k: config[k] for k in ("train_sampler", "zero_grad_set_to_none",
                                                                       "init_scheme", "contrastive_mode",
                                                                       "train_batch_size", "learning_rate")},
              "batches_per_epoch": len(train_data)}

    train_epoch = trainer._train_epoch  # RecBole's per-epoch hook, timed here

    def timed_epoch(*args, **kwargs):
        start = time.perf_counter()
        loss = train_epoch(*args, **kwargs)
        record["train_seconds"].append(time.perf_counter() - start)
        return loss

    trainer._train_epoch = timed_epoch

    def at_epoch(epoch_idx, valid_score):
        epoch = epoch_idx + 1
        if epoch not in at:
            return
        record["valid"][str(epoch)] = float(valid_score)  # valid_metric = Recall@20
        for name, loader in tests.items():
            result = trainer.evaluate(loader, load_best_model=False)
            record["test"][name][str(epoch)] = float(result["recall@20"])
        print(f"  epoch {epoch}: valid {valid_score:.4f}, test (train mask) {record['test']['train'][str(epoch)]:.4f}, "
              f"test (train+valid mask) {record['test']['train+valid'][str(epoch)]:.4f}, "
              f"{statistics.mean(record['train_seconds']):.1f} s/epoch", flush=True)

    trainer.fit(train_data, valid_data, verbose=False, saved=False, callback_fn=at_epoch)
    record["seconds_per_epoch"] = statistics.mean(record["train_seconds"])
    return record


# ------------------------------------------------------------------------------ loaders alone
def time_samplers(data_path, threads, repeats=7):
    """Seconds of one epoch of iteration of each training loader on Baby: the two loaders alternate,
    best of ``repeats`` each (a loaded machine slows both alike)."""
    import torch

    from recbole_micro.quick_start import build

    torch.set_num_threads(threads)
    loaders = {}
    for sampler in ("user", "interaction"):
        config_dict = {"data_path": data_path, "checkpoint_dir": os.path.join(data_path, "saved"), "state": "ERROR",
                       "train_sampler": sampler}
        loaders[sampler] = build("BPR", "baby", config_dict=config_dict, quiet=True)[3][0]
    out = {s: {"seconds": float("inf"), "batches": len(loader)} for s, loader in loaders.items()}
    for _ in range(repeats):
        for sampler, loader in loaders.items():
            start = time.perf_counter()
            rows = sum(len(batch) for batch in loader)
            out[sampler]["seconds"] = min(out[sampler]["seconds"], time.perf_counter() - start)
            out[sampler]["rows"] = rows
    for sampler, r in out.items():
        print(f"  loader {sampler}: {r['seconds']:.3f} s per epoch, {r['batches']} batches, {r['rows']} rows", flush=True)
    out["ratio_user_over_interaction"] = out["user"]["seconds"] / out["interaction"]["seconds"]
    return out


# ------------------------------------------------------------------------------ the page
def _cell(values, digits=4):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _best_valid_test(record, mask):
    """Test Recall@20 at the recorded epoch of best validation (first on ties), as RecBole selects."""
    if not record["valid"]:
        return None
    epoch = max(record["valid"], key=lambda e: (record["valid"][e], -int(e)))
    return record["test"][mask].get(epoch)


def render(results, path):
    runs = list(results["runs"].values())
    lines = ["# Training protocol ablation on Amazon Baby (MICRO)", "",
             "Written by `benchmarks/protocol_ablation.py` from `" + os.path.basename(results.get("json", "")) + "`. "
             "MICRO with the plugin's defaults (the reference code's training: `train_sampler: user`, "
             "`zero_grad_set_to_none: False`, `init_scheme: reference`) against each difference switched back to "
             "RecBole's, one at a time; Recall@20, mean ± sd over the seeds. The test split is ranked with the "
             "reference's mask (training items only, `test_mask_valid: False`) unless the row says otherwise; "
             "`test_mask_valid: True` (RecBole's mask, the plugin's default) is the reference runs' test split "
             "ranked again with the validation items masked too. Same split, evaluator and seeds for every row.", ""]
    if results.get("machine"):
        lines += [f"Machine: {results['machine']}.", ""]
    for mode in sorted({r["mode"] for r in runs}):
        mode_runs = [r for r in runs if r["mode"] == mode]
        at = sorted({int(e) for r in mode_runs for e in r["valid"]})
        rows_valid, rows_test = [], []
        for variant in VARIANTS:
            chosen = [r for r in mode_runs if r["variant"] == variant]
            if not chosen:
                continue
            seeds = ",".join(str(r["seed"]) for r in sorted(chosen, key=lambda r: r["seed"]))
            masks = [("train", variant)] + ([("train+valid", "test_mask_valid: True")] if variant == "reference" else [])
            rows_valid.append([variant, seeds] + [_cell([r["valid"].get(str(e)) for r in chosen]) for e in at]
                              + [_cell([r["seconds_per_epoch"] for r in chosen], 1)])
            for mask, label in masks:
                rows_test.append([label, seeds] + [_cell([r["test"][mask].get(str(e)) for r in chosen]) for e in at]
                                 + [_cell([_best_valid_test(r, mask) for r in chosen])])
        epochs = max(r["epochs"] for r in mode_runs)
        lines += [f"## contrastive_mode: {mode}, {epochs} epoch{'s' if epochs != 1 else ''}", "", "Valid Recall@20 after epoch:", "",
                  table(["variant", "seeds"] + [str(e) for e in at] + ["s/epoch (training)"], rows_valid), "",
                  "Test Recall@20 after epoch:", "",
                  table(["variant", "seeds"] + [str(e) for e in at] + ["at best valid"], rows_test), ""]
        reference = [r for r in mode_runs if r["variant"] == "reference" and r["seed"] == 123 and "5" in r["valid"]]
        if reference:
            r = reference[0]
            valid, test = r["valid"]["5"], r["test"]["train"]["5"]
            lines += [f"Against the official code after 5 epochs (seed 123, its own mask; valid "
                      f"{OFFICIAL_5_EPOCHS['valid']}, test {OFFICIAL_5_EPOCHS['test']}): reference protocol valid "
                      f"{valid:.4f} ({100 * (valid / OFFICIAL_5_EPOCHS['valid'] - 1):+.1f} %), test {test:.4f} "
                      f"({100 * (test / OFFICIAL_5_EPOCHS['test'] - 1):+.1f} %)"
                      + ("" if mode == "full" else "; the official code computes the full contrastive loss") + ".", ""]
    samplers = results.get("samplers")
    if samplers:
        lines += ["## The training loaders alone", "",
                  "One epoch of iteration on Baby (drawing users and positives or slicing interactions, RecBole's "
                  "negative sampling, building the Interactions; no model), the two alternating, best of 7 each:", "",
                  table(["train_sampler", "s/epoch", "batches", "rows"],
                        [(s, f"{samplers[s]['seconds']:.3f}", samplers[s]["batches"], samplers[s]["rows"])
                         for s in ("user", "interaction")]), "",
                  f"Ratio user / interaction: {samplers['ratio_user_over_interaction']:.2f}.", ""]
    lines += ["Regenerate: `" + results.get("command", ".venv/bin/python benchmarks/protocol_ablation.py") + "`", ""]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


# ------------------------------------------------------------------------------ main
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "baby"),
                        help="the LATTICE/MICRO layout of Baby (converted into --data-path)")
    parser.add_argument("--data-path", default=None, help="folder for the converted atoms (default: a temp folder)")
    parser.add_argument("--mode", default="sampled", choices=["sampled", "full"], help="contrastive_mode")
    parser.add_argument("--seeds", default="123,2020,7")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + "; ".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--at", default="5,10,15,20", help="epochs at which valid and test are recorded")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1)))
    parser.add_argument("--json", default=os.path.join(REPO, "results", "protocol-ablation.json"))
    parser.add_argument("--md", default=os.path.join(REPO, "results", "protocol-ablation.md"))
    parser.add_argument("--smoke", action="store_true", help="1 epoch, seed 123, JSON and page in a temp folder")
    parser.add_argument("--render", action="store_true", help="only rewrite the page from the JSON")
    parser.add_argument("--no-samplers", action="store_true", help="skip timing the loaders alone")
    args = parser.parse_args()
    command = " ".join(["benchmarks/protocol_ablation.py"] + sys.argv[1:])
    sys.argv = sys.argv[:1]  # RecBole's Config parses the command line
    if args.smoke:
        smoke_dir = tempfile.mkdtemp(prefix="protocol-ablation-smoke-")
        args.epochs, args.at, args.seeds = 1, "1", "123"
        args.json, args.md = os.path.join(smoke_dir, "protocol-ablation.json"), os.path.join(smoke_dir, "protocol-ablation.md")
    results = load_results(args.json)
    results["json"] = args.json
    if args.render:
        render(results, args.md)
        print(f"wrote {args.md}")
        return
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    at = sorted(int(e) for e in args.at.split(","))
    seeds = [int(s) for s in args.seeds.split(",")]

    from recbole_micro.data import convert_lattice

    data_path = args.data_path or tempfile.mkdtemp(prefix="protocol-ablation-")
    if not os.path.isdir(os.path.join(data_path, "baby")):
        convert_lattice(args.data, "baby", out=data_path)
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    results.update({"machine": machine() + (f"; commit {commit}" if commit else ""),
                    "command": ".venv/bin/python " + command})
    if "samplers" not in results and not args.no_samplers:
        print("timing the training loaders alone", flush=True)
        results["samplers"] = time_samplers(data_path, args.threads)
        save_results(results, args.json)
    for seed in seeds:
        for variant in variants:
            key = run_key(args.mode, variant, seed, args.epochs)
            if key in results["runs"]:
                print(f"done already: {key}", flush=True)
                continue
            print(f"run: {key}", flush=True)
            start = time.time()
            results["runs"][key] = train_one(data_path, args.mode, variant, seed, args.epochs, at, args.threads)
            results["runs"][key]["wall_seconds"] = time.time() - start
            save_results(results, args.json)
            render(copy.deepcopy(results), args.md)
    render(results, args.md)
    print(f"wrote {args.json} and {args.md}")


if __name__ == "__main__":
    main()
