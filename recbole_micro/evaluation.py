r"""Evaluation restricted to candidate items: the item cold-start protocol, for every model.

Config key ``eval_candidates``:

* ``all`` (default, also when unset) — RecBole's full ranking over every item (training items of the
  user masked);
* ``cold`` — each split is ranked over ITS cold items only: the items that occur in that split's
  interactions and have no training interaction. Every other item's score is set to −∞ before the
  top-k, so metrics (Recall, NDCG, …) are computed exactly as usual, over the candidates.

Under the cold-start split (``recbole_micro.data.coldstart``: a fraction of the items have all their
interactions in valid or test, the valid items and the test items disjoint) this gives, for the valid
split, exactly the valid cold items and, for the test split, exactly the test cold items — derived from
the data itself, so no extra file can fall out of step with the split. This is the candidate set of
the LATTICE/MICRO cold-start evaluation (their ``data/cold_start.py`` split: sampled items keep no
training interaction and are evaluated on their own).

``CandidateEvalMixin`` is mixed into every plugin trainer (``recbole_micro.trainer.Trainer`` and every
RecBole trainer wrapped by ``with_safe_checkpoints``), so MICRO, LATTICE and RecBole's ID-only
baselines (BPR, LightGCN, …) are evaluated identically.

Config key ``test_mask_valid`` (``apply_test_mask``, applied to the test loader when the run is built):

* ``True`` (default, RecBole's protocol) — the test ranking masks the user's training AND validation
  items;
* ``False`` (the reference's ``test_torch``: only the training items are masked) — the validation
  items stay in the test ranking and compete with the test items, which lowers test metrics a little.
"""

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader

from recbole_micro.errors import ConfigError

EVAL_CANDIDATES = ("all", "cold")


def eval_candidates_mode(config):
    """The configured ``eval_candidates`` (``all`` when unset), validated."""
    mode = config["eval_candidates"] or "all"
    if mode not in EVAL_CANDIDATES:
        raise ConfigError(f"config key 'eval_candidates' is {mode!r}; use one of {list(EVAL_CANDIDATES)}")
    return mode


def interacted_items(dataset):
    """Internal ids of the items occurring in ``dataset``'s interactions (a sorted numpy array)."""
    return np.unique(np.asarray(dataset.inter_feat[dataset.iid_field]))


def cold_candidate_mask(eval_dataset, train_items, item_num):
    r"""Boolean mask over the ``item_num`` item ids: items in ``eval_dataset``'s interactions that are
    not in ``train_items``. [PAD] (id 0) is never a candidate."""
    mask = np.zeros(item_num, dtype=bool)
    mask[interacted_items(eval_dataset)] = True
    mask[np.asarray(train_items, dtype=np.int64)] = False
    mask[0] = False
    return torch.from_numpy(mask)


def apply_test_mask(config, test_data, train_dataset):
    r"""``test_mask_valid: False``: make ``test_data`` (RecBole's full-sort loader) mask only the training
    items of each user — its history becomes (training items − test items) instead of RecBole's
    (training + validation items − test items). ``True`` leaves the loader as RecBole built it."""
    mask_valid = config["test_mask_valid"]
    if mask_valid is None or mask_valid is True or not test_data:
        return test_data
    if mask_valid is not False:
        raise ConfigError(f"config key 'test_mask_valid' is {mask_valid!r}; use True (RecBole) or False (the reference)")
    if not isinstance(test_data, FullSortEvalDataLoader):
        raise ConfigError(
            "test_mask_valid: False changes which items a full ranking masks; set eval_args.mode to 'full' "
            f"(it is {config['eval_args'].get('mode')!r}) or test_mask_valid: True"
        )
    if test_data.is_sequential:  # sequential models mask no history: nothing to change
        return test_data
    train = train_dataset.inter_matrix(form="csr")
    for uid in test_data.uid_list.tolist():
        trained = train.indices[train.indptr[uid] : train.indptr[uid + 1]]
        history = np.setdiff1d(trained, test_data.uid2positive_item[uid].numpy())
        test_data.uid2history_item[uid] = torch.from_numpy(history.astype(np.int64))
    return test_data


class CandidateEvalMixin:
    """Ranks every evaluation over the candidate items of ``eval_candidates`` (see the module doc)."""

    _non_candidates = None  # bool (item_num,): True where the score is set to −∞
    _candidate_train_items = None

    def fit(self, train_data, valid_data=None, *args, **kwargs):
        # the items a model can have learned from: fixed for this trainer's evaluations
        self._candidate_train_items = interacted_items(train_data._dataset)
        return super().fit(train_data, valid_data, *args, **kwargs)

    def _training_items(self, eval_data):
        if self._candidate_train_items is not None:
            return self._candidate_train_items
        sampler = getattr(eval_data, "_sampler", None)
        phases, datasets = getattr(sampler, "phases", None), getattr(sampler, "datasets", None)
        if phases and datasets and phases[0] == "train":  # RecBole's Sampler keeps the split datasets
            return interacted_items(datasets[0])
        raise ConfigError(
            "eval_candidates: cold needs the training items; call trainer.fit(train_data, ...) before "
            "trainer.evaluate, or set repeatable: False"
        )

    @torch.no_grad()
    def evaluate(self, eval_data, *args, **kwargs):
        if not eval_data or eval_candidates_mode(self.config) == "all":
            return super().evaluate(eval_data, *args, **kwargs)
        if not isinstance(eval_data, FullSortEvalDataLoader):
            raise ConfigError(
                "eval_candidates: cold restricts a full ranking; set eval_args.mode to 'full' (it is "
                f"{self.config['eval_args'].get('mode')!r})"
            )
        dataset = eval_data._dataset
        mask = cold_candidate_mask(dataset, self._training_items(eval_data), dataset.item_num)
        n = int(mask.sum())
        if n == 0:
            raise ConfigError(
                f"eval_candidates is 'cold' but this split of dataset '{self.config['dataset']}' has no item "
                f"without training interactions; build a cold-start split (python -m recbole_micro.data "
                f"lattice SRC --name NAME --cold-start 0.2) or set eval_candidates: all"
            )
        self.logger.info(f"eval_candidates: cold — ranking over {n} cold items of {dataset.item_num - 1}")
        self._non_candidates = (~mask).to(self.device)
        try:
            return super().evaluate(eval_data, *args, **kwargs)
        finally:
            self._non_candidates = None

    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = super()._full_sort_batch_eval(batched_data)
        if self._non_candidates is not None:
            # broadcast over the batch's users; on the scores' device (a memory-based model scores on the CPU)
            scores.masked_fill_(self._non_candidates.to(scores.device), -np.inf)
        return interaction, scores, positive_u, positive_i
