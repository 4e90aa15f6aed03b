"""What the cold items' own ID embeddings do to a trained model's cold-start ranking: each saved checkpoint is
evaluated on its valid and test splits twice, with ``untrained_item_ids: keep`` (as trained: the authors'
codes) and ``zero`` (the ID rows of items without a training interaction read as zeros while scoring).

    .venv/bin/python benchmarks/untrained_ids.py ../runs/saved/MICRO-seed11-*.pth ../runs/saved/VBPR-seed7-*.pth

Post hoc: the checkpoint is the epoch early stopping chose under ``keep``, so ``zero`` is read at an epoch
selected for the other rule (a run trained with ``--untrained_item_ids=zero``, ``converged.sh baby-cold
untrained``, selects its own). Training is the same under both rules (the switch acts while scoring only).
Prints one line per checkpoint: model, seed, valid and test Recall@20 under each rule.
"""

import sys

from recbole_micro import compat  # noqa: F401  (RecBole on today's numpy / pandas)
from recbole_micro.cli_support import OneLineParser, exit_on_bad_input, quiet_library_notices
from recbole_micro.quick_start import load_data_and_model
from recbole_micro.utils import get_trainer

RULES = ("keep", "zero")


def rescore(model_file, metric="recall@20"):
    """``{(rule, split): metric}`` of the checkpoint ``model_file`` under each rule, on valid and test."""
    config, net, _, _, valid_data, test_data = load_data_and_model(model_file)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    net.eval()
    values = {}
    for rule in RULES:
        net.untrained_item_ids = rule
        for split, data in (("valid", valid_data), ("test", test_data)):
            net.clear_eval_cache()
            values[rule, split] = trainer.evaluate(data, load_best_model=False)[metric]
    return config["model"], config["seed"], values


def main(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="best-model checkpoints (.pth) of multimodal plugin models")
    args = parser.parse_args(argv)
    quiet_library_notices()
    exit_on_bad_input(report, args.checkpoints)
    return 0


def report(checkpoints):
    """One header line, then one line per checkpoint (a bad file: one ``error:`` line, exit status 2)."""
    print("model seed " + " ".join(f"{rule}/{split}" for rule in RULES for split in ("valid", "test")))
    for path in checkpoints:
        model, seed, values = rescore(path)
        print(model, seed, " ".join(f"{values[rule, split]:.4f}" for rule in RULES for split in ("valid", "test")),
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
