"""What the cold items' own ID embeddings do to a trained model's cold-start ranking: each saved checkpoint is
evaluated on its valid and test splits twice, with ``untrained_item_ids: keep`` (as trained: the authors'
codes) and ``zero`` (the ID rows of items without a training interaction read as zeros while scoring).

    .venv/bin/python benchmarks/untrained_ids.py ../runs/saved/MICRO-seed11-*.pth ../runs/saved/VBPR-seed7-*.pth

Post hoc: the checkpoint is the epoch early stopping chose under ``keep``, so ``zero`` is read at an epoch
selected for the other rule (a run trained with ``--untrained_item_ids=zero``, ``converged.sh baby-cold
untrained``, selects its own). Training is the same under both rules (the switch acts while scoring only).
Prints one line per checkpoint: model, seed, valid and test Recall@20 under each rule.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recbole_micro import compat  # noqa: F401,E402  (RecBole on today's numpy / pandas)

from _common import checkpoints_command, rescore_rules  # noqa: E402

RULES = ("keep", "zero")


def rescore(model_file, metric="recall@20"):
    """``{(rule, split): metric}`` of the checkpoint ``model_file`` under each rule, on valid and test."""
    return rescore_rules(model_file, RULES, lambda net, rule, _: setattr(net, "untrained_item_ids", rule), metric)


def main(argv=None):
    return checkpoints_command(__doc__, "best-model checkpoints (.pth) of multimodal plugin models", report, argv)


def report(checkpoints):
    """One header line, then one line per checkpoint (a bad file: one ``error:`` line, exit status 2)."""
    print("model seed " + " ".join(f"{rule}/{split}" for rule in RULES for split in ("valid", "test")))
    for path in checkpoints:
        model, seed, values = rescore(path)
        print(model, seed, " ".join(f"{values[rule, split]:.4f}" for rule in RULES for split in ("valid", "test")),
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
