"""Which part of a trained model's item representation ranks the cold items: each saved cold-start checkpoint
is evaluated on its valid and test splits with the cold items (those without a training interaction) scored
from one part of their representation at a time.

    .venv/bin/python benchmarks/cold_parts.py ../runs/saved/FREEDOM-seed123-*.pth ../runs/saved/MICRO-seed11-*.pth

The representations (each model's docstring): MICRO and LATTICE ĩ = i_CF + h/‖h‖ (i_CF the backbone's output
of the ID embeddings, h the item-graph convolution of the ID embeddings), FREEDOM ĩ = ī + h̃ (ī LightGCN's
layer mean, h̃ = S X_i over the frozen feature graph, not normalised). Rules for the cold rows (the warm
rows as trained; ranking is over the cold items only, so only the cold rows matter):

* ``trained``: as the model scores them;
* ``id part``: i_CF (MICRO, LATTICE) or ī (FREEDOM) alone;
* ``content part``: h/‖h‖ (MICRO, LATTICE) or h̃ (FREEDOM) alone, as the model adds it;
* ``content, unit norm``: the content part scaled to norm 1 (for MICRO and LATTICE the same as above): what
  the content part's length adds to the ranking;
* ``content, as convolved``: h before normalisation (MICRO, LATTICE; for FREEDOM the same as the content part).

Post hoc, at the epoch early stopping chose for ``trained``. Prints one line per checkpoint and rule: model,
seed, rule, valid and test Recall@20.
"""

import sys

import torch
import torch.nn.functional as F

from recbole_micro import compat  # noqa: F401  (RecBole on today's numpy / pandas)
from recbole_micro.cli_support import OneLineParser, exit_on_bad_input, quiet_library_notices
from recbole_micro.errors import ConfigError
from recbole_micro.quick_start import load_data_and_model
from recbole_micro.utils import get_trainer

RULES = ("trained", "id part", "content part", "content, unit norm", "content, as convolved")
GRAPH_MODELS = ("MICRO", "LATTICE")


def parts(net):
    """``(users, id_part, added_content, convolved_content)`` of a trained MICRO, LATTICE or FREEDOM (all items)."""
    name = type(net).__name__
    if name == "FREEDOM":
        users, items, h = type(net).forward(net)
        return users, items - h, h, h
    if name in GRAPH_MODELS:
        captured = {}

        def capture(item_content):  # the instance's cf_embeddings: i_CF and h as computed, before the sum
            users, items = net.backbone(net.user_embedding.weight, net.item_embedding.weight)
            captured.update(users=users, items=items, content=item_content)
            return users, items + F.normalize(item_content, p=2, dim=1)

        net.cf_embeddings = capture
        try:
            net.forward()
        finally:
            del net.cf_embeddings
        content = captured["content"]
        return captured["users"], captured["items"], F.normalize(content, p=2, dim=1), content
    raise ConfigError(f"{name} checkpoints are not decomposed here; use a MICRO, LATTICE or FREEDOM checkpoint")


def scored_by(net, rule):
    """A ``scoring_embeddings`` replacement: the cold rows of the item table from ``rule``'s part."""

    def scoring_embeddings():
        users, id_part, added, convolved = parts(net)
        items = id_part + added
        cold = net.untrained_items.to(items.device)
        chosen = {"trained": items, "id part": id_part, "content part": added,
                  "content, unit norm": F.normalize(added, p=2, dim=1), "content, as convolved": convolved}[rule]
        items = items.clone()
        items[cold] = chosen[cold]
        return users, items

    return scoring_embeddings


def rescore(model_file, metric="recall@20"):
    """``{(rule, split): metric}`` of the checkpoint ``model_file``, on valid and test."""
    config, net, _, _, valid_data, test_data = load_data_and_model(model_file)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    net.eval()
    values = {}
    with torch.no_grad():
        for rule in RULES:
            net.scoring_embeddings = scored_by(net, rule)
            for split, data in (("valid", valid_data), ("test", test_data)):
                net.clear_eval_cache()
                values[rule, split] = trainer.evaluate(data, load_best_model=False)[metric]
    return config["model"], config["seed"], values


def report(checkpoints):
    """One line per checkpoint and rule (a bad file: one ``error:`` line, exit status 2)."""
    print("model | seed | cold rows scored from | valid R@20 | test R@20")
    for path in checkpoints:
        model, seed, values = rescore(path)
        for rule in RULES:
            print(f"{model} | {seed} | {rule} | {values[rule, 'valid']:.4f} | {values[rule, 'test']:.4f}", flush=True)


def main(argv=None):
    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="best-model checkpoints (.pth) of MICRO, LATTICE or FREEDOM")
    args = parser.parse_args(argv)
    quiet_library_notices()
    exit_on_bad_input(report, args.checkpoints)
    return 0


if __name__ == "__main__":
    sys.exit(main())
