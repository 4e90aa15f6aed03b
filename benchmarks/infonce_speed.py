"""LGMRec's hypergraph contrastive term, before and after the in-place denominator (``LogSumExpScores``), and
what that does to a whole LGMRec training step on Amazon Baby, all measured in one run.

    .venv/bin/python benchmarks/infonce_speed.py              # 5 interleaved repeats (~3 min on 2 idle cores)
    .venv/bin/python benchmarks/infonce_speed.py --repeats 3 --no-write

"before" is the plain autograd form log(exp(a zᵀ).sum(1)) that ``candidate_infonce`` used until then, "after"
``LogSumExpScores`` (the same arithmetic, scores held once, exponentiated and weighted in place). The loss rows
time one forward + backward of one term at LGMRec's Baby sizes (B = 2048 anchors, d = 64; 19,445 users or
7,050 items as candidates); the step row times LGMRec training steps (``time_training_steps``) with the model
built from Baby's atoms, the denominator switched between the two forms. Repeats alternate before and after;
the table gives medians (the cores are shared). Results go to section ``infonce_speed`` of
``benchmarks/RESULTS.md`` unless ``--no-write``.
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import baby_benchmark, load_average, machine, median, report, steps_with, table  # noqa: E402

from recbole_micro.model import losses  # noqa: E402

BATCH, DIM, CANDIDATES = 2048, 64, {"users (19,445)": 19445, "items (7,050)": 7050}


class PlainDenominator:
    """The form before: plain autograd, which keeps exp(scores) and makes a second B × N tensor backward."""

    @staticmethod
    def apply(a, z):
        return (a @ z.t()).exp().sum(1).log()


def loss_step(denominator, leaves):
    """Seconds of one forward + backward of ``candidate_infonce`` with ``denominator`` in place."""
    for t in leaves:
        t.grad = None
    losses.LogSumExpScores, saved = denominator, losses.LogSumExpScores
    try:
        start = time.perf_counter()
        losses.candidate_infonce(*leaves, 0.2).backward()
        return time.perf_counter() - start
    finally:
        losses.LogSumExpScores = saved


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="training steps per repeat and form")
    setup = baby_benchmark(parser, child=None, prefix="infonce-speed-")
    args, tmp, data_path = setup
    torch.set_num_threads(args.threads)
    from recbole_micro.quick_start import build

    config_dict = {"data_path": data_path, "checkpoint_dir": os.path.join(tmp, "saved"), "state": "ERROR",
                   "show_progress": False, "gpu_id": ""}
    _, model, trainer, (train_data, _, _) = build("LGMRec", "baby", config_dict=config_dict, quiet=True)
    built = (model, trainer, train_data)
    generator = torch.Generator().manual_seed(0)
    inputs = {name: [torch.randn(n, DIM, generator=generator).requires_grad_(True) if k == 2 else
                     torch.randn(BATCH, DIM, generator=generator).requires_grad_(True) for k in range(3)]
              for name, n in CANDIDATES.items()}
    forms = {"before": PlainDenominator, "after": losses.LogSumExpScores}
    times = {(row, form): [] for row in [*CANDIDATES, "LGMRec training step"] for form in forms}
    load_start = load_average()
    for _ in range(args.repeats):
        for form, denominator in forms.items():
            for name, leaves in inputs.items():
                times[name, form].append(loss_step(denominator, leaves))
            times["LGMRec training step", form].append(
                steps_with(losses, "LogSumExpScores", denominator, built, args.steps))
    rows = []
    for row in [*CANDIDATES, "LGMRec training step"]:
        before, after = median(times[row, "before"]) * 1e3, median(times[row, "after"]) * 1e3
        rows.append((row, f"{before:.0f}", f"{after:.0f}", f"{before / after:.2f}"))
    lines = [machine(args.threads, load_start), "",
             table(("forward + backward, ms (median)", "before: plain autograd", "after: LogSumExpScores",
                    "before / after"), rows),
             "", f"{args.repeats} interleaved repeats; contrastive rows: one term, B = {BATCH}, d = {DIM}, "
             f"τ = 0.2; training step: mean of {args.steps - 1} steps (the first left out) of LGMRec's authors' Baby "
             "point, both modalities' terms in it."]
    report("infonce_speed", "LGMRec's contrastive denominator in place (Baby sizes)", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
