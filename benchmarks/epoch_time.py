"""Seconds per training epoch on Amazon Baby — MICRO (``sampled`` and the reference ``full`` loss) against the
plugin's LightGCN — before and after (issue 13, target 2), with a per-phase breakdown of a training step.

    .venv/bin/python benchmarks/epoch_time.py                  # sampled + LightGCN, 2 rounds (~6 min)
    .venv/bin/python benchmarks/epoch_time.py --full           # + MICRO full (~10 more min)
    .venv/bin/python benchmarks/epoch_time.py --epochs 50      # + training runs: test Recall@20, full vs sampled

Every measurement runs in its own process ("child"), with the package of one code version first on the path:
"before" = revision ``--before`` (default: the code before issue 13, extracted with ``git archive``), "after" =
this working tree. Rounds alternate before/after and the models, so both see the same machine load; the
tables give medians over rounds. A child builds the model through the plugin (``quick_start.build``: plugin
config, dataset, trainer), then

* times ``--epochs-timed`` whole epochs of the trainer's own loop (``trainer._train_epoch``: RecBole's batch
  loop with the loss bookkeeping, the item graphs rebuilt on the first batch) — the epoch times compared;
* times ``--steps`` instrumented steps for the breakdown: data (next batch), zero_grad, the forward phases
  (item graphs, item-graph propagation, fusion, CF backbone, contrastive loss — wrapped functions), backward,
  Adam, the trainer's per-term ``.item()``/finite checks; the first step after ``model.train()`` (learned graphs
  rebuilt with gradient) is reported apart, as its extra time per batch of an epoch;
* times Adam alone with every gradient present (zero tensors where a term has none, as ``zero_grad`` did on the
  reference's torch 1.5), with torch's default and ``fused=True`` implementation — the cost of that semantics.

Results go to section ``epoch_time`` of ``benchmarks/RESULTS.md`` unless ``--no-write``.
"""

import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _common import (  # noqa: E402
    BASELINE, REPO, baby_benchmark, load_average, machine, median, peak_rss_mb, report, run_child, table, tree_at,
)

MODELS = {
    "sampled": ("MICRO sampled (1024)", "MICRO", {"contrastive_mode": "sampled", "contrastive_samples": 1024}),
    "lightgcn": ("LightGCN (RecBole's, plugin pipeline)", "LightGCN", {}),
    "full": ("MICRO full (reference)", "MICRO", {"contrastive_mode": "full"}),
}
PHASES = ["data", "zero_grad", "item graphs", "item-graph propagation", "attention fusion", "CF backbone",
          "contrastive loss (fwd + its gradient)", "rest of forward", "backward", "Adam step",
          "loss bookkeeping (.item, finite)"]
TARGET = 1.3


# ------------------------------------------------------------------------------ child
class Timer:
    def __init__(self):
        self.seconds = {}

    def add(self, name, seconds):
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - start)
        return timed

    def clock(self, name, fn, *args):
        start = time.perf_counter()
        out = fn(*args)
        self.add(name, time.perf_counter() - start)
        return out


def instrument(model, timer):
    """Wrap the forward phases of MICRO / the CF model (same names in every code version measured)."""
    import recbole_micro.model.graphs as graphs_module

    if hasattr(model, "item_graph"):
        import recbole_micro.model.micro as micro_module

        model.item_graph = timer.wrap("item graphs", model.item_graph)
        model.fuse = timer.wrap("attention fusion", model.fuse)
        model.backbone.forward = timer.wrap("CF backbone", model.backbone.forward)
        graphs_module.propagate = timer.wrap("item-graph propagation", graphs_module.propagate)
        micro_module.contrastive_loss = timer.wrap("contrastive loss (fwd + its gradient)", micro_module.contrastive_loss)
    else:
        model.forward = timer.wrap("CF backbone", model.forward)


def one_step(model, trainer, batch, timer):
    timer.clock("zero_grad", trainer.optimizer.zero_grad)
    forward = [name for name in PHASES[2:7]]
    before = sum(timer.seconds.get(name, 0.0) for name in forward)
    start = time.perf_counter()
    losses = model.calculate_loss(batch)
    inside = sum(timer.seconds.get(name, 0.0) for name in forward) - before
    timer.add("rest of forward", time.perf_counter() - start - inside)
    loss = sum(losses) if isinstance(losses, tuple) else losses
    parts = losses if isinstance(losses, tuple) else (losses,)
    timer.clock("loss bookkeeping (.item, finite)", lambda: ([p.item() for p in parts], [bool(torch.isfinite(p).all()) for p in parts]))
    timer.clock("backward", loss.backward)
    timer.clock("Adam step", trainer.optimizer.step)


def adam_every_step(model, trainer, batch, repeats=5):
    """Seconds of one Adam step when every trainable parameter has a gradient (torch 1.5's zero_grad)."""
    trainer.optimizer.zero_grad(set_to_none=False)
    losses = model.calculate_loss(batch)
    (sum(losses) if isinstance(losses, tuple) else losses).backward()
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)
    group = trainer.optimizer.param_groups[0]
    params = [p for p in model.parameters() if p.requires_grad]
    out = {}
    for label, extra in (("default", {}), ("fused", {"fused": True})):
        optimizer = torch.optim.Adam(params, lr=group["lr"], weight_decay=group.get("weight_decay", 0.0), **extra)
        optimizer.step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            optimizer.step()
            times.append(time.perf_counter() - start)
        out[label] = median(times)
    out["values"] = sum(p.numel() for p in params)
    return out


def child(spec):
    from _common import child_setup

    tree = child_setup()
    torch.set_num_threads(spec["threads"])
    from recbole_micro.quick_start import build

    config_dict = {"data_path": spec["data"], "checkpoint_dir": os.path.join(spec["data"], "saved"), "state": "ERROR",
                   "show_progress": False, **spec["extra"]}
    start = time.perf_counter()
    config, model, trainer, (train_data, _, _) = build(spec["model"], "baby", config_dict=config_dict, quiet=True)
    out = {"tree": tree, "build_s": time.perf_counter() - start, "batches": len(train_data)}
    epochs = []
    for epoch in range(spec["epochs"]):
        start = time.perf_counter()
        trainer._train_epoch(train_data, epoch)
        epochs.append(time.perf_counter() - start)
    out["epochs"] = epochs
    timer = Timer()
    instrument(model, timer)
    model.train()  # stale graphs: the next step rebuilds them with gradient
    batches = iter(train_data)
    start = time.perf_counter()
    one_step(model, trainer, next(batches), timer)
    out["first_step"] = time.perf_counter() - start
    out["first_phases"] = dict(timer.seconds)
    timer.seconds.clear()  # the breakdown covers the other steps
    steps = []
    for _ in range(spec["steps"]):
        start = time.perf_counter()
        batch = timer.clock("data", next, batches)
        one_step(model, trainer, batch, timer)
        steps.append(time.perf_counter() - start)
    out["step"] = median(steps)
    out["phases"] = {name: seconds / spec["steps"] for name, seconds in timer.seconds.items()}
    out["adam_every_step"] = adam_every_step(model, trainer, batch)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


# ------------------------------------------------------------------------------ parent
def train_runs(data_path, epochs):
    from recbole_micro.quick_start import run_recbole_micro

    rows = []
    for key in ("full", "sampled", "lightgcn"):
        label, model_name, extra = MODELS[key]
        config_dict = {"data_path": data_path, "checkpoint_dir": os.path.join(data_path, "saved"), "state": "INFO",
                       "show_progress": False, "epochs": epochs, "eval_step": epochs, **extra}
        result = run_recbole_micro(model_name, "baby", config_dict=config_dict, saved=True)
        rows.append((label, epochs, f"{result['seconds_per_epoch']:.1f}", result["test_result"]["recall@20"],
                     result["test_result"]["ndcg@20"]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BASELINE, help="git revision of the 'before' code")
    parser.add_argument("--epochs-timed", type=int, default=1, help="whole epochs timed per child")
    parser.add_argument("--steps", type=int, default=12, help="instrumented steps per child")
    parser.add_argument("--full", action="store_true", help="also MICRO with the full loss (slow)")
    parser.add_argument("--epochs", type=int, default=0, help="also train each model this many epochs (slow)")
    started = baby_benchmark(parser, child, "micro-bench-")
    if started is None:
        return
    args, tmp, _ = started
    trees = {"before": tree_at(args.before), "after": REPO}
    keys = ["sampled", "lightgcn"] + (["full"] if args.full else [])
    load_start = load_average()
    results = {(version, key): [] for version in trees for key in keys}
    for round_index in range(args.rounds):
        order = list(trees) if round_index % 2 == 0 else list(trees)[::-1]
        for version in order:
            for key in keys:
                _, model_name, extra = MODELS[key]
                spec = {"model": model_name, "extra": extra, "data": tmp, "epochs": args.epochs_timed,
                        "steps": args.steps, "threads": args.threads}
                r = run_child(os.path.abspath(__file__), trees[version], spec, args.threads)
                results[(version, key)].append(r)
                print(f"round {round_index + 1} {version} {key}: epoch {r['epochs']} step {r['step']:.3f} "
                      f"first {r['first_step']:.2f}", flush=True)

    def epoch(version, key):
        return median([e for r in results[(version, key)] for e in r["epochs"]])

    rows = []
    for key in keys:
        label = MODELS[key][0]
        cells = [label]
        for version in trees:
            rs = results[(version, key)]
            cells += [f"{epoch(version, key):.1f}", f"{median([r['step'] for r in rs]):.3f}",
                      f"{median([r['first_step'] for r in rs]):.2f}"]
        cells.append(f"{epoch('before', key) / epoch('after', key):.2f}×")
        rows.append(cells)
    ratio = {v: epoch(v, "sampled") / epoch(v, "lightgcn") for v in trees}
    ratio_rows = [("MICRO sampled / LightGCN epoch", f"{ratio['before']:.2f}", f"{ratio['after']:.2f}", f"≤ {TARGET}",
                   "met" if ratio["after"] <= TARGET else f"missed by {ratio['after'] / TARGET - 1:.0%}")]
    if args.full:
        full = {v: epoch(v, "full") / epoch(v, "lightgcn") for v in trees}
        ratio_rows.append(("MICRO full / LightGCN epoch", f"{full['before']:.2f}", f"{full['after']:.2f}", "—", "—"))

    def phase_rows(version):
        out = []
        for name in PHASES:
            out.append([name] + [f"{1000 * median([r['phases'].get(name, 0.0) for r in results[(version, key)]]):.1f}"
                                 for key in keys])
        out.append(["step (median, wall)"] + [f"{1000 * median([r['step'] for r in results[(version, key)]]):.1f}"
                                              for key in keys])
        batches = {key: results[(version, key)][0]["batches"] for key in keys}
        out.append(["first step of an epoch: extra per batch (graph rebuild with gradient)"] + [
            f"{1000 * (median([r['first_step'] for r in results[(version, key)]]) - median([r['step'] for r in results[(version, key)]])) / batches[key]:.1f}"
            for key in keys])
        return out

    adam = {key: results[("after", key)][-1]["adam_every_step"] for key in keys}
    batches = results[("after", keys[0])][0]["batches"]
    command = ".venv/bin/python benchmarks/epoch_time.py" + (" --full" if args.full else "") + (
        f" --rounds {args.rounds}" if args.rounds != 2 else "") + (f" --epochs {args.epochs}" if args.epochs else "") + (
        f" --threads {args.threads}" if args.threads != 2 else "")
    header = [MODELS[k][0] for k in keys]
    out = [
        f"Machine: {machine(args.threads, load_start)}; {load_average():.1f} at the end.", "", f"Command: `{command}`", "",
        f"Whole epochs of the plugin's trainer loop (batch 1024, {batches} batches), median of {args.rounds} rounds "
        f"× {args.epochs_timed} epoch(s) per version; each measurement in its own process, versions and models "
        "interleaved. before = " + f"`{args.before}`, after = this tree.", "",
        table(["model", "before: epoch s", "before: step s", "before: first step s", "after: epoch s",
               "after: step s", "after: first step s", "speed-up"], rows), "",
        table(["ratio", "before", "after", "target", "verdict"], ratio_rows), "",
        f"Per-phase breakdown of a training step (ms per step, median over rounds of the mean of {args.steps} steps; "
        "forward phases are wrapped functions, backward is autograd's whole backward):", "",
        "**after**", "", table(["phase"] + header, phase_rows("after")), "",
        "**before**", "", table(["phase"] + header, phase_rows("before")), "",
        "Adam with a gradient on every parameter (zero where a term has none — the reference's torch 1.5 "
        "`zero_grad`, which *after* keeps by default, `zero_grad_set_to_none: False`; *before* set them to None and "
        "Adam skipped the raw features on all but the first batch of an epoch), timed alone: " + "; ".join(
            f"{MODELS[k][0]}: {adam[k]['values'] / 1e6:.1f} M values, {1000 * adam[k]['default']:.1f} ms (default) / "
            f"{1000 * adam[k]['fused']:.1f} ms (`fused=True`)" for k in keys) + ".", "",
        f"Peak RSS of a child: {max(r['peak_rss_mb'] for rs in results.values() for r in rs):.0f} MB.", "",
    ]
    if args.epochs:
        out += [f"Full training runs, {args.epochs} epochs each, test at the end (RecBole's standard NDCG):", "",
                table(["model", "epochs", "s/epoch", "test Recall@20", "test NDCG@20"], train_runs(tmp, args.epochs)), ""]
    report("epoch_time", "Epoch time on Amazon Baby", out, write=not args.no_write)


if __name__ == "__main__":
    main()
