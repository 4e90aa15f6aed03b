"""Item-graph build time and peak memory vs catalogue size, and MICRO training at 100k items (sampled loss).

    .venv/bin/python benchmarks/graph_scale.py                       # 7,050 / 23,033 / 100,000 items + 100k training
    .venv/bin/python benchmarks/graph_scale.py --sizes 7050 23033    # graphs only, smaller sizes

Each measurement runs in its own process, so its peak RSS (``ru_maxrss``) is its own. Sizes:
7,050 = Amazon Baby with its (reconstructed, 256-d) image and text features from ``../shared/data/baby``;
23,033 (Amazon Clothing's item count; its features are not in ``../shared/data``) and 100,000 use generated
clustered features, 1,024-d and 384-d (cluster centroid + noise). Per size: the two ORIGINAL kNN graphs
(built once; k = 10, sym) and one LEARNED graph step per modality with gradient (projection to 64-d, kNN, sym
normalisation, λ-mix, propagation, backward) as done on the first batch of every epoch.
The training measurement builds a generated 100k-item dataset, replaces its features in memory by
1,024-d / 384-d ones, and times training steps of MICRO with ``contrastive_mode: sampled``; the epoch is
extrapolated (first step + (batches − 1) × mean of the others). Writes section ``graph_scale`` of RESULTS.md.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _common import machine, peak_rss_mb, report, sgemm_gflops, table, time_training_steps  # noqa: E402

BABY = os.path.join("..", "shared", "data", "baby")
DIMS = {"image": 1024, "text": 384}


def generated_features(n, dims=DIMS, clusters=500, noise=0.5, seed=0):
    """Clustered float32 features, one matrix per modality."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, clusters, size=n)
    out = {}
    for modality, dim in dims.items():
        centroids = rng.standard_normal((clusters, dim), dtype=np.float32)
        x = centroids[cluster]
        x += noise * rng.standard_normal((n, dim), dtype=np.float32)
        out[modality] = torch.from_numpy(x)
    return out


def child_graphs(n, knn_chunk):
    from recbole_micro.model import graphs

    if n == 7050:
        feats = {m: torch.from_numpy(np.load(os.path.join(BABY, f"{m}_feat.npy")).astype(np.float32))
                 for m in ("image", "text")}
    else:
        feats = generated_features(n)
    start = time.perf_counter()
    original = {m: graphs.knn_graph(x, 10, "sym", knn_chunk) for m, x in feats.items()}
    build = time.perf_counter() - start
    rss_build = peak_rss_mb()
    torch.manual_seed(0)
    item_embedding = torch.nn.Parameter(torch.randn(n, 64) * 0.01)
    start = time.perf_counter()
    total = 0
    for m, x in feats.items():
        projection = torch.nn.Linear(x.shape[1], 64)
        learned = graphs.knn_graph(projection(x), 10, "sym", knn_chunk, with_grad=True)
        adj = graphs.mix_graphs(learned, original[m], 0.9)
        total = total + graphs.propagate(adj, item_embedding, 1).pow(2).sum()
    total.backward()
    learned_s = time.perf_counter() - start
    return {"n": n, "dims": {m: x.shape[1] for m, x in feats.items()}, "original_build_s": build,
            "rss_after_build_mb": rss_build, "learned_step_s": learned_s, "peak_rss_mb": peak_rss_mb()}


def child_train(n, steps, samples, freeze=False):
    sys.argv = sys.argv[:1]
    from recbole_micro.data.caches import data_preparation

    from recbole_micro.config import Config
    from recbole_micro.data.synthetic import make_synthetic_dataset
    from recbole_micro.model.micro import MICRO
    from recbole_micro.trainer import MICROTrainer
    from recbole_micro.utils import create_dataset

    tmp = tempfile.mkdtemp(prefix="micro-scale-")
    start = time.perf_counter()
    make_synthetic_dataset(tmp, "big", n_users=n // 2, n_items=n, n_clusters=500, per_user=(5, 12),
                           dims={"image": 2, "text": 2}, seed=0)
    config = Config("MICRO", "big", config_dict={
        "data_path": tmp, "checkpoint_dir": os.path.join(tmp, "saved"), "state": "ERROR", "show_progress": False,
        "contrastive_mode": "sampled", "contrastive_samples": samples, "device": "cpu", "use_gpu": False,
        "freeze_features": freeze})
    train_data, _, _ = data_preparation(config, create_dataset(config))
    dataset = train_data._dataset
    dataset.modality_features = generated_features(dataset.item_num)  # 1,024-d / 384-d, row 0 = [PAD]
    data_s = time.perf_counter() - start
    start = time.perf_counter()
    model = MICRO(config, dataset)
    init_s = time.perf_counter() - start
    timed = time_training_steps(model, MICROTrainer(config, model), train_data, steps)
    return {"n": dataset.item_num - 1, "users": dataset.user_num - 1, "train_interactions": len(dataset),
            "data_s": data_s, "model_init_s": init_s, "first_step_s": timed["first"], "step_s": timed["step"],
            "batches": timed["batches"], "epoch_s": timed["epoch"], "peak_rss_mb": peak_rss_mb()}


def in_child(args):
    command = [sys.executable, os.path.abspath(__file__)] + args
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[7050, 23033, 100000])
    parser.add_argument("--train-items", type=int, default=100000, help="0: skip the training measurement")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--knn-chunk", type=int, default=1024)
    parser.add_argument("--freeze-features", action="store_true", help="train with freeze_features: True")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", choices=["graphs", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "graphs":
        print(json.dumps(child_graphs(args.n, args.knn_chunk)))
        return
    if args.child == "train":
        print(json.dumps(child_train(args.n, args.steps, args.samples, args.freeze_features)))
        return

    rate = sgemm_gflops()
    rows = []
    for n in args.sizes:
        r = in_child(["--child", "graphs", "--n", str(n), "--knn-chunk", str(args.knn_chunk)])
        flops = 2 * n * n * sum(r["dims"].values()) / 1e9
        rows.append((f"{n:,}", " + ".join(f"{d}-d" for d in r["dims"].values()), f"{r['original_build_s']:.1f}",
                     f"{flops:.0f}", f"{r['learned_step_s']:.1f}", f"{r['peak_rss_mb']:.0f}",
                     f"{n * n * 4 / 2**20:.0f}"))
        print(rows[-1], flush=True)
    command = ".venv/bin/python benchmarks/graph_scale.py" + (
        f" --sizes {' '.join(map(str, args.sizes))}" if args.sizes != [7050, 23033, 100000] else "") + (
        f" --train-items {args.train_items}" if args.train_items != 100000 else "") + (
        " --freeze-features" if args.freeze_features else "")
    out = [f"Machine: {machine()}; sgemm {rate:.0f} GFLOP/s (2048³, this run).", "", f"Command: `{command}`", "",
           f"Graphs (k = 10, sym, knn_chunk_size {args.knn_chunk}; each size in its own process):", "",
           table(["items", "features", "original graphs s", "their GFLOP (2·N²·Σd)", "learned graph step s",
                  "peak RSS MB", "one dense N×N float32 MB"], rows), ""]
    if args.train_items:
        t = in_child(["--child", "train", "--n", str(args.train_items), "--steps", str(args.steps),
                      "--samples", str(args.samples)] + (["--freeze-features"] if args.freeze_features else []))
        print(t, flush=True)
        out += [f"MICRO training on {t['n']:,} generated items ({t['users']:,} users, {t['train_interactions']:,} "
                f"training interactions; features 1,024-d + 384-d, {'frozen' if args.freeze_features else 'trainable'}), "
                f"`contrastive_mode: sampled`, "
                f"{args.samples} negatives, batch 1024, {args.steps} steps timed:", "",
                table(["data s", "model init s (original graphs)", "first step s", "step s", "batches",
                       "epoch s (extrapolated)", "peak RSS MB"],
                      [(f"{t['data_s']:.0f}", f"{t['model_init_s']:.0f}", f"{t['first_step_s']:.1f}",
                        f"{t['step_s']:.2f}", t["batches"], f"{t['epoch_s']:.0f}", f"{t['peak_rss_mb']:.0f}")]), ""]
    report("graph_scale", "Graph build and memory vs catalogue size", out, write=not args.no_write)


if __name__ == "__main__":
    main()
