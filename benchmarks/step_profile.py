"""What bounds a training step (issue 21, item 4): one step of the plugin's trainer split into its phases, timed
with a device synchronisation between them, median over ``--steps`` steps (the epoch's first step, which rebuilds
MICRO's learned graphs, is reported apart).

* ``batch``: the next training batch from the dataloader (the sampler, on the host, in numpy);
* ``to device``: ``interaction.to(device)``;
* ``forward``: ``model.calculate_loss`` (for MICRO: the propagation over the cached item graphs, the fusion and
  the contrastive loss);
* ``backward``; ``optimizer``: ``optimizer.zero_grad`` + ``optimizer.step``; ``finite check``: the trainer's one
  host-device sync per step on the loss terms.

    python benchmarks/step_profile.py --data_path <folder holding baby/> [--device cuda:0] [--models MICRO,LightGCN]

On a GPU the synchronisations serialise what would overlap, so the phases add up to a little more than an
unprofiled step; their shares say which side (host sampler, launches, arithmetic) bounds it.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PHASES = ("batch", "to device", "forward", "backward", "optimizer", "finite check")


def profile(model_name, args):
    import torch

    from recbole_micro.quick_start import build

    config_dict = {"data_path": args.data_path, "checkpoint_dir": os.path.join(args.work, "saved"), "state": "ERROR",
                   "show_progress": False, "gpu_id": "" if args.device == "cpu" else str(torch.device(args.device).index or 0)}
    if model_name == "MICRO":
        config_dict["contrastive_mode"] = args.contrastive_mode
    config, model, trainer, (train_data, _, _) = build(model_name, args.dataset, config_dict=config_dict, quiet=True)
    device = config["device"]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = {phase: [] for phase in PHASES}
    first = None
    model.train()
    batches = iter(train_data)
    for step in range(args.steps + 1):
        marks = [time.perf_counter()]
        try:
            batch = next(batches)
        except StopIteration:
            batches = iter(train_data)
            batch = next(batches)
        marks.append(time.perf_counter())
        batch = batch.to(device)
        sync()
        marks.append(time.perf_counter())
        losses = model.calculate_loss(batch)
        loss = sum(losses) if isinstance(losses, tuple) else losses
        sync()
        marks.append(time.perf_counter())
        loss.backward()
        sync()
        marks.append(time.perf_counter())
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        sync()
        marks.append(time.perf_counter())
        trainer._check_finite(losses, 0)
        marks.append(time.perf_counter())
        spent = [b - a for a, b in zip(marks, marks[1:])]
        if step == 0:
            first = sum(spent)
            continue
        for phase, seconds in zip(PHASES, spent):
            times[phase].append(seconds)
    medians = {phase: statistics.median(values) * 1e3 for phase, values in times.items()}
    return medians, first * 1e3, str(device)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--dataset", default="baby")
    parser.add_argument("--device", default="cuda:0", help="cuda:N or cpu")
    parser.add_argument("--models", default="MICRO,LightGCN")
    parser.add_argument("--contrastive_mode", default="full", help="MICRO's contrastive_mode (full or sampled)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--work", default=None, help="folder for the (unused) checkpoints; default: a temporary one")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]
    import tempfile

    args.work = args.work or tempfile.mkdtemp(prefix="step-profile-")
    rows = []
    for name in args.models.split(","):
        medians, first, device = profile(name, args)
        rows.append((name, medians, first))
        print(f"{name} on {device}: " + ", ".join(f"{p} {v:.2f} ms" for p, v in medians.items()), flush=True)
    print("\n| model | " + " | ".join(PHASES) + " | step (sum) | host share | first step of an epoch |")
    print("|---|" + "---:|" * (len(PHASES) + 3))
    for name, medians, first in rows:
        total = sum(medians.values())
        host = medians["batch"] / total
        print(f"| {name} | " + " | ".join(f"{medians[p]:.2f}" for p in PHASES)
              + f" | {total:.2f} | {host:.0%} | {first:.1f} |")
    print("\nms per step, median; host share = the sampler's part of the step")


if __name__ == "__main__":
    main()
