"""Chance level of the item cold-start evaluation, and its spread: what an ID-only model's valid Recall@K can
read without knowing anything about the cold items.

    .venv/bin/python benchmarks/cold_chance.py ../runs/atoms/baby-cold      # the converter's atoms folder

An ID-only model (BPR, LightGCN) never sees a cold item as a positive, so it ranks a split's cold items by
embeddings that carry no information about them. Where its users share a dominant direction, that ranking is
close to one global list for all users (then its valid Recall moves by several thousandths between
validations, as measured, instead of staying at K / n as per-user random rankings averaged over 10,000 users
would). Recall@K of a uniformly random global top-K list has expectation K / n (n = the split's cold items)
but a wide spread: a few popular cold items in the list move it for every user
at once. Selecting the best of many validations of such a model on valid picks an upper tail of this
distribution, and test (other items) falls back to chance. This script draws random lists (seeded) and prints
the distribution per split. Per-user Recall@K = |list ∩ H_u| / |H_u| with H_u the user's held-out items, as
RecBole's Recall; a list's value is linear in its items, so each item's weight Σ_u 1/|H_u| / |users| is
computed once.
"""

import argparse
import os
import sys

import numpy as np
import pandas as pd


def item_weights(inter_path):
    """Weight of each item of an interaction file in the user-averaged Recall: Σ_u [i ∈ H_u] / |H_u| / |users|."""
    frame = pd.read_csv(inter_path, sep="\t", dtype=str)
    if frame.shape[1] < 2:
        raise ValueError(f"{inter_path}: expected the columns user_id:token and item_id:token")
    users, items = frame.columns[:2]
    frame = frame.drop_duplicates([users, items])
    per_user = frame.groupby(users)[items].transform("size")
    weights = (1.0 / per_user).groupby(frame[items]).sum() / frame[users].nunique()
    return weights.to_numpy(), frame[users].nunique()


def random_list_recall(weights, k, draws, seed):
    """Recall@k of ``draws`` uniformly random k-item lists over the items of ``weights``."""
    rng = np.random.default_rng(seed)
    picks = np.argsort(rng.random((draws, len(weights))), axis=1)[:, :k]
    return weights[picks].sum(axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("atoms", help="the cold-start dataset's atoms folder (<name>.valid.inter, <name>.test.inter)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--draws", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    name = os.path.basename(os.path.normpath(args.atoms))
    for split in ("valid", "test"):
        path = os.path.join(args.atoms, f"{name}.{split}.inter")
        if not os.path.isfile(path):
            sys.exit(f"error: {path} does not exist; pass the folder the converter wrote "
                     f"(python -m recbole_micro.data lattice ... --cold-start 0.2 --out FOLDER)")
        weights, n_users = item_weights(path)
        values = random_list_recall(weights, args.k, args.draws, args.seed)
        p95, p99 = np.percentile(values, [95, 99])
        print(f"{split}: {len(weights)} cold items, {n_users:,} users; Recall@{args.k} of a random global list "
              f"({args.draws:,} draws): expected {args.k / len(weights):.4f}, mean {values.mean():.4f}, "
              f"std {values.std(ddof=1):.4f}, 95th percentile {p95:.4f}, 99th {p99:.4f}, max {values.max():.4f}")


if __name__ == "__main__":
    main()
