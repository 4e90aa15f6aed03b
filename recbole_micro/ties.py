r"""Tied scores in a full ranking: broken at random, not by item id.

RecBole's ``Collector`` takes each user's top K with ``torch.topk``, which chooses among equal scores by their
position, i.e. by internal item id (on Baby's 7,050 items: the lowest ids). Ids follow the order of the atomic
files (popularity, time, the converter's order), so a model that gives many items the same score is credited
with that order's ranking. It happens: BM3 scores items through its ID embeddings only (⟨f_p(h_u), f_p(h_i)⟩),
a cold item's ID embedding receives no gradient but the regulariser's, which drives it to exactly zero, and
then every cold item scores ⟨h̃_u, b_p⟩ for every user — on Baby cold start the id order alone gave valid
Recall@20 0.1031, 3.7× the 0.028 of a random ranking.

Config key ``tie_break``:

* ``random`` (default) — every full-ranking evaluation ranks the items in a random order among equal
  scores: the score columns are permuted by a random permutation before the top-k (and the positives
  and returned item ids mapped through it), so the metrics of tied items are those of a random order.
  Where no two scores tie, every metric equals RecBole's to the bit (the top K, and their order, are
  the same; ``collector.EvalCollector`` applies the order). The permutation is drawn from its own
  generator (the global random streams, hence training, are untouched): seeded by ``seed`` and the
  epoch for each validation during training, so that a flat, fully tied validation curve varies as a
  random ranking does and early stopping ends it; by ``seed`` alone for every evaluation outside
  training (the test, and any checkpoint evaluated later).
* ``index`` — RecBole's order: equal scores by item id.

Ranking metrics only (``rec.topk``, ``rec.items``, ``rec.meanrank``, which already averages ties);
sampled (``uni100``-style) evaluation is left as RecBole's. ``recommend`` follows the checkpoint's
``tie_break`` too (``top_k``, the order drawn from the seed, as every evaluation outside training).
"""

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader

from recbole_micro.collector import EvalCollector
from recbole_micro.errors import ConfigError

TIE_BREAKS = ("random", "index")
_STREAM = 0x7E5  # keeps this generator's seeds apart from any other use of the config seed


def tie_break_mode(config):
    """The configured ``tie_break`` (``random`` when unset), validated."""
    mode = config["tie_break"] or "random"
    if mode not in TIE_BREAKS:
        raise ConfigError(f"config key 'tie_break' is {mode!r}; use one of {list(TIE_BREAKS)} (random: equal "
                          f"scores in a random order; index: RecBole's order, by item id)")
    return mode


def tie_order(n_items, seed, epoch=None):
    r"""The random item order of one evaluation: a permutation of ``n_items`` drawn from (seed, epoch)."""
    entropy = [_STREAM, abs(int(seed if seed is not None else 0)), 0 if epoch is None else int(epoch) + 1]
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
    return torch.randperm(n_items, generator=generator)


def top_k(scores, k, order=None):
    r"""``(values, item ids)`` of the ``k`` best scores per row; equal scores in ``order`` (``tie_order``'s
    permutation) instead of by item id when it is given."""
    if order is None:
        return torch.topk(scores, k)
    order = order.to(scores.device)
    values, columns = torch.topk(scores[:, order], k)
    return values, order[columns]


class TieBreakEvalMixin:
    """Full-ranking evaluations break ties as ``tie_break`` says (see the module doc), through the plugin's
    ``collector.EvalCollector`` (which also makes RecBole's item metrics work); mixed into every plugin trainer
    before ``CandidateEvalMixin``, so the permutation applies to the candidate-masked scores."""

    _tie_epoch = None  # the epoch just trained while ``fit`` runs, else None

    def __init__(self, config, model):
        super().__init__(config, model)
        self.eval_collector = EvalCollector(config)

    def fit(self, train_data, valid_data=None, *args, **kwargs):
        try:
            return super().fit(train_data, valid_data, *args, **kwargs)
        finally:
            self._tie_epoch = None

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        self._tie_epoch = epoch_idx  # the validation that follows draws its order from (seed, epoch)
        return super()._train_epoch(train_data, epoch_idx, *args, **kwargs)

    @torch.no_grad()
    def evaluate(self, eval_data, *args, **kwargs):
        if not isinstance(eval_data, FullSortEvalDataLoader) or tie_break_mode(self.config) == "index":
            return super().evaluate(eval_data, *args, **kwargs)
        order = tie_order(eval_data._dataset.item_num, self.config["seed"], self._tie_epoch)
        self.eval_collector.set_order(order, self.device)
        try:
            return super().evaluate(eval_data, *args, **kwargs)
        finally:
            self.eval_collector.set_order(None, self.device)
