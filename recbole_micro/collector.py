r"""The plugin's evaluation collector: RecBole's ``Collector`` with two changes.

* **Tie order** (``order``, set per evaluation by ``ties.TieBreakEvalMixin``): the batch's score columns are
  taken in a drawn order before RecBole's top-k, the positives moved to their columns and the returned top-k
  columns mapped back to item ids, so equal scores are ranked in that order instead of by item id.
* **Item metrics** (ItemCoverage, AveragePopularity, GiniIndex, ShannonEntropy, TailPercentage): RecBole
  1.2.1's ``get_data_struct`` calls ``.cpu()`` on every entry, and the entries those metrics need from the
  training data (``data.num_items`` is an int, ``data.count_items`` a ``Counter``) have none, so every
  evaluation with one of them stopped with ``AttributeError: 'int' object has no attribute 'cpu'``. Here only
  the tensors are moved; the other entries are handed over as they are.
"""

import copy

import torch
from recbole.evaluator import Collector

# what ``Collector.data_collect`` stores from the training data: numbers and counters, no tensors
TRAINING_DATA_KEYS = ("data.num_items", "data.num_users", "data.count_items", "data.count_users")


class EvalCollector(Collector):
    r"""RecBole's ``Collector``, with an optional column order for the top-k and every item metric working."""

    order = None  # LongTensor (n_items,) on the scores' device: column j of the permuted scores is item order[j]
    position = None  # its inverse: item i sits in column position[i]

    def set_order(self, order, device):
        self.order = None if order is None else order.to(device)
        self.position = None if order is None else torch.argsort(order).to(device)

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        if self.order is None or scores_tensor.dim() != 2 or scores_tensor.shape[1] != self.order.numel():
            return super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        items_before = len(self.data_struct["rec.items"]) if "rec.items" in self.data_struct else 0
        # the positives' columns, on the device RecBole keeps its positives on
        columns = self.position[positive_i.to(self.position.device)].to(positive_i.device)
        # on the scores' device: RecBole's memory-based models (EASE, ItemKNN, ...) score on the CPU in a GPU run
        order = self.order.to(scores_tensor.device)
        super().eval_batch_collect(scores_tensor[:, order], interaction, positive_u, columns)
        if "rec.items" in self.data_struct:  # top-k columns back to item ids
            items = self.data_struct["rec.items"]
            items[items_before:] = order.to(items.device)[items[items_before:]]

    def get_data_struct(self):
        held = {key: self.data_struct[key] for key in TRAINING_DATA_KEYS if key in self.data_struct}
        for key in held:
            del self.data_struct[key]
        try:
            returned = super().get_data_struct()
        finally:
            for key, value in held.items():
                self.data_struct.set(key, value)
        for key, value in held.items():
            returned.set(key, copy.deepcopy(value))
        return returned
