"""Whether a checkpoint's published numbers depend on how tied scores are ranked: each saved checkpoint is
evaluated on its valid and test splits with ``tie_break: index`` (RecBole's ``torch.topk`` order, by item id:
every run before ``tie_break`` existed) and ``random`` (``recbole_micro/ties.py``, the default since).

    .venv/bin/python benchmarks/ties_check.py ../runs/saved/FREEDOM-seed7-*.pth ../runs/saved/BM3-seed123-*.pth

Equal numbers: the model's scores do not tie at the cut-off, so its published row stands as it is. Different
numbers: the id order was part of the result (BM3 on item cold start: every cold item scores the same).
Prints one line per checkpoint: its file, model, seed, valid and test Recall@20 under each order, and whether
they are the same.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recbole_micro import compat  # noqa: F401,E402  (RecBole on today's numpy / pandas)

from _common import checkpoints_command, rescore_rules  # noqa: E402

ORDERS = ("index", "random")


def rescore(model_file, metric="recall@20"):
    """``(model, seed, {(order, split): metric})`` of the checkpoint ``model_file`` under each order."""
    return rescore_rules(model_file, ORDERS, lambda net, order, config: config.__setitem__("tie_break", order), metric)


def main(argv=None):
    return checkpoints_command(__doc__, "best-model checkpoints (.pth) of any model run through the plugin", report,
                               argv)


def report(checkpoints):
    """One header line, then one line per checkpoint (a bad file: one ``error:`` line, exit status 2)."""
    columns = " ".join(f"{order}/{split}" for order in ORDERS for split in ("valid", "test"))
    print(f"file model seed {columns} same")
    for path in checkpoints:
        model, seed, values = rescore(path)
        same = all(values["index", split] == values["random", split] for split in ("valid", "test"))
        numbers = " ".join(f"{values[order, split]:.4f}" for order in ORDERS for split in ("valid", "test"))
        print(os.path.basename(path), model, seed, numbers, "yes" if same else "no", flush=True)


if __name__ == "__main__":
    sys.exit(main())
