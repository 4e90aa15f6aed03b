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
seed, rule, valid and test Recall@20; then, per checkpoint, the geometry of the two parts over the cold and
over the warm rows: mean length of the ID part and of the content part, mean cosine between them, and mean
cosine between the ID part and the mean user embedding (negative: pushed away from users, as sampled
negatives are).
"""

import os
import sys

import torch
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


def geometry(net):
    """``{"cold" | "warm": (mean ‖id part‖, mean ‖content part‖, mean cos(id part, content part), mean cos(id part,
    mean user))}`` over the untrained items ([PAD] aside) and over the trained ones."""
    users, items, tables = parts(net)
    id_part, content = tables["id part"], tables["content part"]
    mean_user = users[1:].mean(0, keepdim=True)
    warm = torch.ones(items.shape[0], dtype=torch.bool, device=items.device)
    warm[net.untrained_items.to(items.device)] = False
    cold = net.untrained_items[1:].to(items.device)
    return {name: (id_part[rows].norm(dim=1).mean().item(), content[rows].norm(dim=1).mean().item(),
                   F.cosine_similarity(id_part[rows], content[rows]).mean().item(),
                   F.cosine_similarity(id_part[rows], mean_user).mean().item())
            for name, rows in (("cold", cold), ("warm", warm))}


def rescore(model_file, metric="recall@20"):
    """``(model, seed, {(rule, split): metric}, geometry)`` of the checkpoint ``model_file``, on valid and test."""
    shapes = {}

    def apply(net, rule, _):
        if not shapes:
            shapes.update(geometry(net))
        net.scoring_embeddings = scored_by(net, rule)

    return (*rescore_rules(model_file, RULES, apply, metric), shapes)


def report(checkpoints):
    """One line per checkpoint and rule (a bad file: one ``error:`` line, exit status 2)."""
    print("model | seed | cold rows scored from | valid R@20 | test R@20")
    shapes = []
    for path in checkpoints:
        model, seed, values, shape = rescore(path)
        shapes.append((model, seed, shape))
        for rule in RULES:
            print(f"{model} | {seed} | {rule} | {values[rule, 'valid']:.4f} | {values[rule, 'test']:.4f}", flush=True)
    print("\nmodel | seed | rows | mean ‖id part‖ | mean ‖content part‖ | cos(id part, content part) | "
          "cos(id part, mean user)")
    for model, seed, shape in shapes:
        for rows, numbers in shape.items():
            print(f"{model} | {seed} | {rows} | " + " | ".join(f"{x:.3f}" for x in numbers))


def main(argv=None):
    return checkpoints_command(__doc__, "best-model checkpoints (.pth) of MICRO, LATTICE, FREEDOM, LGMRec or VBPR", report, argv)


if __name__ == "__main__":
    sys.exit(main())
