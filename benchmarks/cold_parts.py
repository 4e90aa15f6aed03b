"""Which part of a trained model's item representation ranks the cold items: each saved cold-start checkpoint
is evaluated on its valid and test splits with the cold items (those without a training interaction) scored
from one part of their representation at a time.

    .venv/bin/python benchmarks/cold_parts.py ../runs/saved/FREEDOM-seed123-*.pth ../runs/saved/MICRO-seed11-*.pth

The representations (each model's docstring and ``content_part``; ``scoring_content`` gives the content part):
MICRO and LATTICE ĩ = i_CF + h/‖h‖ (i_CF the backbone's output of the ID embeddings, h the item-graph
convolution of the ID embeddings), FREEDOM ĩ = ī + h̃ (ī LightGCN's layer mean, h̃ = S X_i over the frozen
feature graph, not normalised), LGMRec E_c + (Σ_m norm(E_m) + α norm(E_ghe)), VBPR [γ_i; E f_i]; BM3 has no
content part (one ``error:`` line). Rules for the cold rows (the warm
rows as trained; ranking is over the cold items only, so only the cold rows matter):

* ``trained``: as the model scores them;
* ``id part``: i_CF (MICRO, LATTICE), ī (FREEDOM), E_c (LGMRec) or γ_i (VBPR) alone;
* ``content part``: the content part alone, as the model adds it (``untrained_item_ids: content``);
* ``content, unit norm``: the content part scaled to norm 1 (for MICRO and LATTICE the same as above): what
  the content part's length adds to the ranking;
* ``content, as convolved``: h before normalisation (MICRO, LATTICE; for the others the same as the content part).

Post hoc, at the epoch early stopping chose for ``trained``. Prints one line per checkpoint and rule: model,
seed, rule, valid and test Recall@20.
"""

import os
import sys

import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recbole_micro import compat  # noqa: F401,E402  (RecBole on today's numpy / pandas)
from recbole_micro.model.multimodal import MultimodalGraphRecommender  # noqa: E402

from _common import checkpoints_command, rescore_rules  # noqa: E402

RULES = ("trained", "id part", "content part", "content, unit norm", "content, as convolved")


def parts(net):
    """``(users, items, {rule: item table})`` of a trained model that names a ``content_part``: the scored items
    and, per rule, the table the cold rows are taken from (the ID part is the items minus the content part)."""
    net.check_untrained_rule("content")  # a model without a content part: one line
    users, items, content = net.scoring_content()
    convolved = net.forward()[-1] if isinstance(net, MultimodalGraphRecommender) else content
    return users, items, {"trained": items, "id part": items - content, "content part": content,
                          "content, unit norm": F.normalize(content, p=2, dim=1), "content, as convolved": convolved}


def scored_by(net, rule):
    """A ``scoring_embeddings`` replacement: the cold rows of the item table from ``rule``'s part."""

    def scoring_embeddings():
        users, items, tables = parts(net)
        cold = net.untrained_items.to(items.device)
        return users, items.index_copy(0, cold, tables[rule][cold])

    return scoring_embeddings


def rescore(model_file, metric="recall@20"):
    """``{(rule, split): metric}`` of the checkpoint ``model_file``, on valid and test."""
    return rescore_rules(model_file, RULES, lambda net, rule: setattr(net, "scoring_embeddings", scored_by(net, rule)),
                         metric)


def report(checkpoints):
    """One line per checkpoint and rule (a bad file: one ``error:`` line, exit status 2)."""
    print("model | seed | cold rows scored from | valid R@20 | test R@20")
    for path in checkpoints:
        model, seed, values = rescore(path)
        for rule in RULES:
            print(f"{model} | {seed} | {rule} | {values[rule, 'valid']:.4f} | {values[rule, 'test']:.4f}", flush=True)


def main(argv=None):
    return checkpoints_command(__doc__, "best-model checkpoints (.pth) of MICRO, LATTICE, FREEDOM, LGMRec or VBPR", report, argv)


if __name__ == "__main__":
    sys.exit(main())
