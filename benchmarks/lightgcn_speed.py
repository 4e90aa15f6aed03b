"""RecBole's LightGCN training step on Amazon Baby, with RecBole's own ``forward`` and with the ``lightgcn speed``
fix of ``recbole_micro/compat.py`` (its Â·E products on CSR copies of Â and Âᵀ made once), in one run.

    .venv/bin/python benchmarks/lightgcn_speed.py              # 5 interleaved repeats (~4 min on 2 idle cores)
    .venv/bin/python benchmarks/lightgcn_speed.py --repeats 3 --threads 1 --no-write

Both forms train the same model on the same batches (``tests/test_compat.py`` checks that they reach the same
weights bit for bit); what differs is time. torch's backward of ``torch.sparse.mm`` multiplies by ``Â.t()``, an
uncoalesced COO tensor coalesced again at every product (4 layers: 4 per step). Rows: the authors' grid's layer
counts (``properties/hyper/LightGCN.hyper``) at RecBole's batch size 1024 (the converged runs' setting); the
table gives medians of the step time (the cores are shared). Results go to section ``lightgcn_speed`` of
``benchmarks/RESULTS.md`` unless ``--no-write``.
"""

import argparse
import inspect
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import baby_benchmark, load_average, machine, median, report, steps_with, table  # noqa: E402

LAYERS = (1, 2, 3, 4)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="training steps per repeat and form")
    args, tmp, data_path = baby_benchmark(parser, child=None, prefix="lightgcn-speed-")
    torch.set_num_threads(args.threads)
    from recbole.model.general_recommender.lightgcn import LightGCN
    from recbole_micro import compat
    from recbole_micro.quick_start import build

    if compat.fixed_by(LightGCN.forward) != "lightgcn speed":
        sys.exit("error: the lightgcn speed fix is not in force (RECBOLE_MICRO_COMPAT_OFF?): nothing to compare")
    forms = {"RecBole's forward": inspect.unwrap(LightGCN.forward), "lightgcn speed": LightGCN.forward}
    times = {(layers, form): [] for layers in LAYERS for form in forms}
    load_start = load_average()
    for layers in LAYERS:
        config_dict = {"data_path": data_path, "checkpoint_dir": os.path.join(tmp, "saved"), "state": "ERROR",
                       "show_progress": False, "gpu_id": "", "n_layers": layers, "train_batch_size": 1024}
        _, model, trainer, (train_data, _, _) = build("LightGCN", "baby", config_dict=config_dict, quiet=True)
        for _ in range(args.repeats):
            for form, forward in forms.items():
                times[layers, form].append(
                    steps_with(LightGCN, "forward", forward, (model, trainer, train_data), args.steps))
        batches = len(train_data)
    rows = []
    for layers in LAYERS:
        own, fast = (median(times[layers, form]) * 1e3 for form in forms)
        rows.append((layers, f"{own:.0f}", f"{fast:.0f}", f"{own / fast:.2f}", f"{batches * own / 1e3:.1f}",
                     f"{batches * fast / 1e3:.1f}"))
    lines = [machine(args.threads, load_start), "",
             table(("layers", "step ms, RecBole's forward", "step ms, lightgcn speed", "ratio",
                    "epoch s (steps only), RecBole's", "epoch s, lightgcn speed"), rows),
             "", f"{args.repeats} interleaved repeats of {args.steps - 1} timed training steps (the first left out), "
             f"batch 1024 ({batches} batches an epoch); epoch = batches × step, without sampling and evaluation."]
    report("lightgcn_speed", "RecBole's LightGCN on cached sparse products (Baby)", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
