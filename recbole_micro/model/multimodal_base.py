r"""``MultimodalRecommender``: what every multimodal model of the plugin needs.

* the item feature atoms of ``dataset.modality_features`` (any number of modalities, ``modalities``
  in their order), as tensors on the model's device or as (frozen / trainable) embedding tables;
* the configuration checks common to them (``validation.check_multimodal_config``; subclasses with
  more keys override ``check_config``);
* the evaluation cache: the final user and item embeddings are computed once per evaluation
  (``scoring_embeddings`` under ``no_grad``), kept in ``restore_user_e`` / ``restore_item_e`` (RecBole's
  names, saved as ``other_parameter``) and cleared by every training step (``calculate_loss``) and
  every ``model.train()``;
* ``predict`` / ``full_sort_predict`` as inner products of the cached embeddings;
* ``untrained_item_ids``: how items without a training interaction (cold items) are scored — ``keep``
  (every reference code) scores them with their ID embeddings as training left them (only ever pushed
  down as sampled negatives); ``zero`` reads those rows of ``item_id_tables()`` as zeros while the
  evaluation embeddings are computed, so such items are scored from their content part alone (with the
  item's own ID embedding read as zeros wherever the content part convolves it too); ``content`` scores
  them from the content part of the item representation (``scoring_content``) as computed, which models
  whose scores have such a part name in ``content_part`` (MICRO and LATTICE: h/‖h‖; FREEDOM: h̃; LGMRec:
  everything but E_c; VBPR: its visual term, the same as ``zero``; BM3 has none).

A subclass defines ``forward`` (returning the final ``(users, items, ...)`` first, or overriding
``scoring_embeddings``) and ``losses(interaction)`` (a tensor or a tuple of loss terms, named by
``loss_names``). The graph machinery of MICRO and LATTICE lives in ``multimodal.py``
(``MultimodalGraphRecommender``, a subclass); VBPR and BM3 subclass this class directly.
"""

import contextlib

import numpy as np
import torch
import torch.nn as nn
from recbole.model.abstract_recommender import GeneralRecommender

from recbole_micro.errors import ConfigError
from recbole_micro.model.validation import check_multimodal_config


class MultimodalRecommender(GeneralRecommender):
    r"""Features, config checks, evaluation cache and scoring shared by the plugin's multimodal models."""

    content_part = None  # the part of the item scores that comes from the features, named (``untrained_item_ids: content``)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.check_config(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.modalities = list(dataset.modality_features)
        self.restore_user_e = None
        self.restore_item_e = None
        self.other_parameter_name = ["restore_user_e", "restore_item_e"]
        self.untrained_item_ids = config["untrained_item_ids"]
        self.check_untrained_rule(self.untrained_item_ids)
        # the items (and [PAD]) without an interaction in the training split the model is built on
        per_item = np.asarray(dataset.inter_matrix(form="csr").sum(axis=0)).ravel()
        self.untrained_items = torch.from_numpy(np.flatnonzero(per_item == 0))  # CPU; moved where used

    def check_config(self, config, dataset):
        """Validate the keys this model reads (one ``ConfigError`` naming key, value and fix)."""
        check_multimodal_config(config, dataset)

    def check_untrained_rule(self, rule):
        """``content`` needs a model whose item scores have a content part (``content_part``)."""
        if rule == "content" and self.content_part is None:
            raise ConfigError(f"config key 'untrained_item_ids' is 'content'; {type(self).__name__}'s item scores "
                              f"have no content part apart from the ID embeddings: use 'keep' or 'zero'")

    # ------------------------------------------------------------------ features
    def feature_tensors(self, dataset, copy=False):
        r"""``{modality: E_m}`` (N × d_m float tensors, [PAD] row 0 included) on the model's device.

        ``copy=True`` gives tensors of their own (needed for anything training writes into): the dataset's
        tensors are shared by every model built from it."""
        return {m: x.to(self.device, copy=copy) for m, x in dataset.modality_features.items()}

    def feature_embeddings(self, dataset, freeze):
        r"""``nn.ModuleDict`` of ``nn.Embedding`` tables holding E_m; trainable tables (``freeze=False``)
        get a copy of the features (``from_pretrained`` keeps the tensor it is given as the weight, and
        training would otherwise overwrite the dataset's); frozen ones share the dataset's tensor."""
        features = self.feature_tensors(dataset, copy=not freeze)
        return nn.ModuleDict({m: nn.Embedding.from_pretrained(x, freeze=freeze) for m, x in features.items()})

    # ------------------------------------------------------------------ training
    def calculate_loss(self, interaction):
        """RecBole's training step: clears the evaluation cache, then ``losses(interaction)``."""
        self.clear_eval_cache()
        return self.losses(interaction)

    def losses(self, interaction):
        """The loss term(s) of one batch."""
        raise NotImplementedError

    def clear_eval_cache(self):
        self.restore_user_e = self.restore_item_e = None

    def train(self, mode=True):
        """RecBole calls ``model.train()`` at every epoch start: cached evaluation embeddings are stale."""
        if mode:
            self.clear_eval_cache()
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        """Move a CF backbone's (non-parameter) sparse graph along with ``.to(device)``."""
        module = super()._apply(fn, *args, **kwargs)
        if getattr(self, "backbone", None) is not None and getattr(self.backbone, "adj", None) is not None:
            self.backbone.adj = fn(self.backbone.adj)
        return module

    # ------------------------------------------------------------------ scoring
    def scoring_embeddings(self):
        r"""The (users, items) embeddings whose inner products are the scores: ``forward()[:2]`` by default."""
        return self.forward()[:2]

    def scoring_content(self):
        r"""``(users, items, content)``: the scoring embeddings and the part of ``items`` that comes from the
        item features (same shape), for models that name it in ``content_part``."""
        raise NotImplementedError

    def item_id_tables(self):
        """The trained tables with one row per item id that ``untrained_item_ids: zero`` blanks: X_i."""
        return [self.item_embedding.weight]

    @contextlib.contextmanager
    def untrained_ids_blanked(self):
        """With ``untrained_item_ids: zero``, the rows of ``item_id_tables()`` of the untrained items read as
        zeros inside the block (restored on exit, whatever happens); with ``keep``, nothing changes."""
        saved = []
        try:
            if self.untrained_item_ids == "zero":
                for table in self.item_id_tables():
                    rows = self.untrained_items.to(table.device)
                    saved.append((table, rows, table.data[rows].clone()))
                    table.data[rows] = 0.0
            yield
        finally:
            for table, rows, values in saved:
                table.data[rows] = values

    def eval_embeddings(self):
        """``scoring_embeddings()`` computed once per evaluation (no gradient; untrained item ids as
        ``untrained_item_ids`` says), cached until the next training step."""
        if self.restore_user_e is None or self.restore_item_e is None:
            with torch.no_grad(), self.untrained_ids_blanked():
                if self.untrained_item_ids == "content":
                    users, items, content = self.scoring_content()
                    rows = self.untrained_items.to(items.device)
                    items = items.index_copy(0, rows, content[rows])
                else:
                    users, items = self.scoring_embeddings()
            # plain tensors: a Parameter returned as is (VBPR's user factors) would be registered as one
            self.restore_user_e, self.restore_item_e = users.detach(), items.detach()
        return self.restore_user_e, self.restore_item_e

    def predict(self, interaction):
        users, items = self.eval_embeddings()
        return (users[interaction[self.USER_ID]] * items[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        users, items = self.eval_embeddings()
        return (users[interaction[self.USER_ID]] @ items.t()).view(-1)
