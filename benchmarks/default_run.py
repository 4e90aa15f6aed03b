"""The README's first command — ``python run_recbole_micro.py``: MICRO on the embedded ml-100k-mm (1,681 items) with
the default 30 epochs — timed as a new user runs it, before and after (issue 13, target 4), plus the validation
curve that the default epoch budget buys.

    .venv/bin/python benchmarks/default_run.py                 # before + after, then the curve (~12 min)
    .venv/bin/python benchmarks/default_run.py --no-before --curve-epochs 0

Each run is ``<tree>/run_recbole_micro.py`` in a fresh empty working directory (the dataset is built there on
first use, as for a first-time user), ``--threads`` torch threads; the time is the process's wall time.
"before" = revision ``--before`` (``git archive``). The curve: the same model and data, validated after every
epoch for ``--curve-epochs`` epochs (no early stop), valid Recall@20 / NDCG@20 per epoch and the test metrics
of the 30-epoch default run. Writes section ``default_run`` of ``benchmarks/RESULTS.md`` unless ``--no-write``.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _common import BASELINE, REPO, load_average, machine, median, report, table, tree_at  # noqa: E402

TARGET = 90.0
CURVE_AT = (1, 2, 3, 5, 10, 15, 20, 25, 30, 40, 50, 60, 80, 100)


def timed_run(tree, threads):
    """Wall seconds of ``run_recbole_micro.py`` (no arguments) from ``tree`` in a new empty folder, and what it printed."""
    work = tempfile.mkdtemp(prefix="micro-first-run-")
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=tree)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, os.path.join(tree, "run_recbole_micro.py")], cwd=work, env=env,
                         capture_output=True, text=True, timeout=7200)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"run_recbole_micro.py in {tree} failed:\n{out.stderr[-3000:]}")
    found = re.search(r"\((\d+) epochs, ([\d.]+) s/epoch\)", out.stdout)
    recall = re.search(r"recall@20\s*\|?\s*([\d.]+)", out.stdout, re.IGNORECASE)
    return {"seconds": seconds, "epochs": int(found.group(1)) if found else None,
            "s_per_epoch": float(found.group(2)) if found else None, "stdout": out.stdout[-2000:],
            "recall": recall.group(1) if recall else None}


def curve(epochs, threads):
    """Valid Recall@20 / NDCG@20 after every epoch of the default MICRO run on ml-100k-mm."""
    import torch

    from recbole_micro.quick_start import run_recbole_micro

    torch.set_num_threads(threads)
    sys.argv = sys.argv[:1]
    work = tempfile.mkdtemp(prefix="micro-curve-")
    points = []
    config = {"data_path": os.path.join(work, "atomic_data"), "checkpoint_dir": os.path.join(work, "saved"),
              "epochs": epochs, "eval_step": 1, "stopping_step": epochs + 1, "state": "ERROR", "show_progress": False}
    def record(epoch_idx, valid_score):
        points.append((epoch_idx + 1, valid_score))

    result = run_recbole_micro("MICRO", "ml-100k-mm", config_dict=config, callback_fn=record)
    return points, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BASELINE)
    parser.add_argument("--no-before", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--curve-epochs", type=int, default=60)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    trees = {"after": REPO} if args.no_before else {"before": tree_at(args.before), "after": REPO}
    load_start = load_average()
    runs = {version: [] for version in trees}
    for round_index in range(args.rounds):
        for version in (trees if round_index % 2 == 0 else list(trees)[::-1]):
            r = timed_run(trees[version], args.threads)
            runs[version].append(r)
            print(f"round {round_index + 1} {version}: {r['seconds']:.1f} s, {r['epochs']} epochs, "
                  f"{r['s_per_epoch']} s/epoch", flush=True)
    rows = []
    for version, rs in runs.items():
        rows.append((version, len(rs), f"{median([r['seconds'] for r in rs]):.0f}",
                     f"{median([r['s_per_epoch'] for r in rs]):.2f}", rs[0]["epochs"]))
    after = median([r["seconds"] for r in runs["after"]])
    verdict = f"**met**: {after:.0f} s ≤ {TARGET:.0f} s" if after <= TARGET else \
        f"**missed** by {after - TARGET:.0f} s ({after / TARGET - 1:.0%})"
    out = [f"Machine: {machine(args.threads, load_start)}; {load_average():.1f} at the end.", "",
           "Command: `.venv/bin/python benchmarks/default_run.py" + (" --no-before" if args.no_before else "") + (
               f" --threads {args.threads}" if args.threads != 2 else "") + (
               f" --curve-epochs {args.curve_epochs}" if args.curve_epochs != 60 else "") + "`", "",
           f"`python run_recbole_micro.py` (MICRO, ml-100k-mm built on first use, default epochs), {args.threads} "
           "threads, in a new empty folder, wall time of the process:", "",
           table(["version", "runs", "wall s (median)", "s/epoch (training)", "epochs"], rows), "",
           f"Target 4 (≤ {TARGET:.0f} s on 2 cores): {verdict}.", ""]
    if args.curve_epochs:
        points, result = curve(args.curve_epochs, args.threads)
        shown = [(e, s) for e, s in points if e in CURVE_AT or e == len(points)]
        out += [f"Validation curve of the same run, validated after every epoch for {args.curve_epochs} epochs "
                f"(valid Recall@20; `.venv/bin/python benchmarks/default_run.py --curve-epochs {args.curve_epochs}`):", "",
                table(["epoch"] + [str(e) for e, _ in shown], [["valid Recall@20"] + [f"{s:.4f}" for _, s in shown]]), "",
                f"Best valid Recall@20 {max(s for _, s in points):.4f} at epoch "
                f"{max(points, key=lambda p: p[1])[0]}; at the default 30 epochs "
                f"{dict(points).get(30, float('nan')):.4f}.", ""]
    report("default_run", "The README's first command (ml-100k-mm)", out, write=not args.no_write)


if __name__ == "__main__":
    main()
