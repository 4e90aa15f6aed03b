"""GPU check of issue 13 (target 5), run by ``benchmarks/gpu_check.sh``: seconds per Amazon Baby training epoch of
MICRO, ``contrastive_mode`` full and sampled × ``contrastive_precision`` fp32 and bf16, with the peak GPU memory
of each, and the contrastive loss alone (forward + backward, Baby size) in both precisions. Prints a table.

    python benchmarks/gpu_check.py --data_path <folder holding baby/> [--device cuda:0] [--epochs 1]

The dataset is read once; each variant is a new model and trainer on it. An epoch is the plugin trainer's own
loop (``trainer._train_epoch``), timed after a warm-up epoch of ``--warmup-steps`` steps (CUDA kernels, cuBLAS
handles), with ``torch.cuda.synchronize`` around it. Peak memory: ``torch.cuda.max_memory_allocated`` over the
timed epoch (reset before it).
"""

import argparse
import itertools
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loss_alone(device, precision, repeats=5):
    import torch

    from recbole_micro.model.losses import contrastive_loss

    torch.manual_seed(0)
    z = [torch.randn(7050, 64, device=device, requires_grad=True) for _ in range(3)]  # Baby's size
    times = []
    for _ in range(repeats + 1):
        sync(device)
        start = time.perf_counter()
        (contrastive_loss(z[0], z[2], precision=precision) + contrastive_loss(z[1], z[2], precision=precision)).backward()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--dataset", default="baby", help="dataset under --data_path (baby; others for smoke tests)")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per variant")
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]
    import torch
    from recbole_micro.data.caches import data_preparation

    from recbole_micro.config import Config
    from recbole_micro.model.micro import MICRO
    from recbole_micro.trainer import MICROTrainer
    from recbole_micro.utils import create_dataset

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device visible to torch (torch.cuda.is_available() is False)", file=sys.stderr)
        sys.exit(2)
    gpu_id = str(device.index or 0)
    config = Config("MICRO", args.dataset, config_dict={
        "data_path": args.data_path, "checkpoint_dir": os.path.join(args.data_path, "saved"), "state": "ERROR",
        "show_progress": False, "gpu_id": gpu_id, "use_gpu": device.type == "cuda"})
    start = time.perf_counter()
    train_data, _, _ = data_preparation(config, create_dataset(config))
    print(f"data: {time.perf_counter() - start:.1f} s; device {config['device']}; "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; torch {torch.__version__}", flush=True)
    rows = []
    for mode, precision in itertools.product(("full", "sampled"), ("fp32", "bf16")):
        config["contrastive_mode"], config["contrastive_precision"] = mode, precision
        torch.manual_seed(0)
        start = time.perf_counter()
        model = MICRO(config, train_data._dataset).to(config["device"])
        trainer = MICROTrainer(config, model)
        init_s = time.perf_counter() - start
        model.train()
        for index, batch in enumerate(train_data):  # warm-up
            if index == args.warmup_steps:
                break
            trainer.optimizer.zero_grad()
            sum(model.calculate_loss(batch.to(config["device"]))).backward()
            trainer.optimizer.step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = []
        for epoch in range(args.epochs):
            sync(device)
            start = time.perf_counter()
            trainer._train_epoch(train_data, epoch)
            sync(device)
            seconds.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        loss_s = loss_alone(device, precision)
        rows.append({"mode": mode, "precision": precision, "epoch_s": min(seconds), "init_s": init_s,
                     "peak_mb": peak, "loss_step_s": loss_s, "batches": len(train_data)})
        print(json.dumps(rows[-1]), flush=True)
        del model, trainer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print()
    print("| contrastive_mode | precision | s / epoch | peak GPU MB | loss alone s (fwd+bwd, 2 modalities, N=7050) | model init s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['precision']} | {r['epoch_s']:.2f} | {r['peak_mb']:.0f} | {r['loss_step_s']:.4f} | {r['init_s']:.1f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
