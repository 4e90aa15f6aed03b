"""Seconds per training epoch on Amazon Baby: MICRO (reference ``full`` loss, ``sampled`` loss) and RecBole's
LightGCN, plus the contrastive loss alone against its FLOP floor — all measured in the same run.

    .venv/bin/python benchmarks/epoch_time.py                 # a few steps per model, extrapolated (~3 min)
    .venv/bin/python benchmarks/epoch_time.py --epochs 50     # + full training runs: test Recall@20, full vs sampled

Epoch times are extrapolated from ``--steps`` training steps: the first step of an epoch (which rebuilds the
learned item graphs with gradient) + (batches − 1) × the mean of the following ones. The FLOP floor of the
full contrastive loss is 12·N²·d multiply-adds per step for two modalities (forward: the N × 2N similarities
per modality; backward: two products of the same size), i.e. 24·N²·d FLOP, divided by the sgemm rate
measured in this run. Results go to ``benchmarks/RESULTS.md`` (section ``epoch_time``) unless ``--no-write``.
"""

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine, peak_rss_mb, report, sgemm_gflops, table, time_training_steps  # noqa: E402

from recbole_micro.model.losses import contrastive_loss, contrastive_loss_autograd  # noqa: E402

MODELS = {
    "MICRO full (reference)": ("MICRO", {"contrastive_mode": "full"}),
    "MICRO sampled (1024)": ("MICRO", {"contrastive_mode": "sampled", "contrastive_samples": 1024}),
    "LightGCN (RecBole)": ("LightGCN", {}),
}


def loss_step(fn, n, d=64, repeats=2):
    """Best time of one step of the two-modality contrastive loss (forward + backward) over N items."""
    torch.manual_seed(0)
    z = [torch.randn(n, d, requires_grad=True) for _ in range(3)]
    best = (float("inf"), 0.0, 0.0)
    for _ in range(repeats):
        start = time.perf_counter()
        loss = fn(z[0], z[2], 0.5) + fn(z[1], z[2], 0.5)
        middle = time.perf_counter()
        loss.backward()
        end = time.perf_counter()
        best = min(best, (end - start, middle - start, end - middle))
    return best


def time_steps(model_name, extra, data_path, steps):
    from recbole_micro.quick_start import build

    config_dict = {"data_path": data_path, "checkpoint_dir": os.path.join(data_path, "saved"), "state": "ERROR",
                   "show_progress": False, **extra}
    config, model, trainer, (train_data, _, _) = build(model_name, "baby", config_dict=config_dict, quiet=True)
    return time_training_steps(model, trainer, train_data, steps)


def train_runs(data_path, epochs):
    from recbole_micro.quick_start import run_recbole_micro

    rows = []
    for label, (model_name, extra) in MODELS.items():
        config_dict = {"data_path": data_path, "checkpoint_dir": os.path.join(data_path, "saved"), "state": "INFO",
                       "show_progress": False, "epochs": epochs, "eval_step": epochs, **extra}
        result = run_recbole_micro(model_name, "baby", config_dict=config_dict, saved=True)
        rows.append((label, epochs, f"{result['seconds_per_epoch']:.1f}", result["test_result"]["recall@20"],
                     result["test_result"]["ndcg@20"]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join("..", "shared", "data", "baby"))
    parser.add_argument("--steps", type=int, default=4, help="training steps timed per model (>= 2)")
    parser.add_argument("--epochs", type=int, default=0, help="also train each model this many epochs (slow)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # RecBole's Config parses the command line

    from recbole_micro.data import convert_lattice

    out = [f"Machine: {machine()}.", "", "Command: `.venv/bin/python benchmarks/epoch_time.py " + " ".join(
        a for a in (f"--steps {args.steps}", f"--epochs {args.epochs}" if args.epochs else "") if a) + "`", ""]
    tmp = tempfile.mkdtemp(prefix="micro-bench-")
    convert_lattice(args.data, "baby", out=tmp)
    n, d = 7050, 64
    rate = sgemm_gflops()
    fast = loss_step(contrastive_loss, n)
    slow = loss_step(contrastive_loss_autograd, n)
    rate = max(rate, sgemm_gflops())
    floor = 24 * n * n * d / 1e9 / rate
    out += [f"Contrastive loss alone, N = {n}, d = {d}, two modalities, one step (forward + backward), best of 2:", "",
            table(["implementation", "forward s", "backward s", "step s", "× FLOP floor"],
                  [("plain autograd (before)", f"{slow[1]:.3f}", f"{slow[2]:.3f}", f"{slow[0]:.3f}", f"{slow[0] / floor:.2f}"),
                   ("InfoNCE function (now)", f"{fast[1]:.3f}", f"{fast[2]:.3f}", f"{fast[0]:.3f}", f"{fast[0] / floor:.2f}")]),
            "", f"sgemm rate (2048³, best of 5, measured before and after): {rate:.0f} GFLOP/s; FLOP floor = "
            f"24·N²·d = {24 * n * n * d / 1e9:.1f} GFLOP → {floor:.3f} s; speed-up {slow[0] / fast[0]:.2f}×.", ""]
    print("\n".join(out), flush=True)
    rows = []
    for label, (model_name, extra) in MODELS.items():
        r = time_steps(model_name, extra, tmp, max(2, args.steps))
        rows.append((label, f"{r['first']:.2f}", f"{r['step']:.2f}", r["batches"], f"{r['epoch']:.0f}"))
        print(rows[-1], flush=True)
    out += [f"Training steps on Baby (batch 1024; {max(2, args.steps)} steps timed per model, epoch extrapolated = "
            "first step + (batches − 1) × mean of the others):", "",
            table(["model", "first step s", "step s", "batches", "epoch s (extrapolated)"], rows), "",
            f"Peak RSS of the benchmark process: {peak_rss_mb():.0f} MB.", ""]
    if args.epochs:
        out += [f"Full training runs, {args.epochs} epochs each, test at the end (RecBole's standard NDCG):", "",
                table(["model", "epochs", "s/epoch", "test Recall@20", "test NDCG@20"], train_runs(tmp, args.epochs)), ""]
    else:
        out += ["Accuracy of sampled vs full after the same number of epochs (long on this CPU): "
                "`.venv/bin/python benchmarks/epoch_time.py --epochs 50`.", ""]
    report("epoch_time", "Epoch time on Amazon Baby", out, write=not args.no_write)


if __name__ == "__main__":
    main()
