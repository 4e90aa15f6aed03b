r"""FREEDOM
################################################
Reference:
    Xin Zhou, Zhiqi Shen. "A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal
    Recommendation." ACM MM 2023 (arXiv 2211.06924).

Reference code: enoche/FREEDOM ``src/models/freedom.py`` (identical to enoche/MMRec ``src/models/freedom.py``)
with MMRec's ``configs/model/FREEDOM.yaml`` and ``configs/overall.yaml``. Read for the formulas, not copied.

* Frozen item graph (paper §3, freezing), built once from the RAW features before training:
  Ŝ^m_ij = 1 if j is among the k most cosine-similar items of i (i itself included), else 0;
  S̃^m = D^-1/2 Ŝ^m D^-1/2 (D = row sums = k, so every edge is 1/k); S = Σ_m α_m S̃^m with
  α_image = ``mm_image_weight`` and the other modalities sharing 1 − α_image (one modality: weight 1).
* Denoised user–item graph (paper §3, denoising): every epoch, keep n = ⌊|E|(1 − ρ)⌋ training interactions drawn
  without replacement with probability ∝ p_k = 1/√(d_u d_i) (the full graph's degrees), then
  A_ρ = D^-1/2 A_ρ D^-1/2 with the degrees of the KEPT graph. Evaluation uses the full graph.
* Embeddings (paper §3, integration): h̃_i = S^L X_i (``n_mm_layers``, last layer); LightGCN on A_ρ (``n_ui_layers``,
  layer mean) gives u, ī; the item representation is ī + h̃_i (no normalisation), score ⟨u, ī + h̃_i⟩.
* Loss (paper §3, optimisation): L_BPR(u, i⁺, i⁻) + λ Σ_m L_BPR(u, x̃^m_{i⁺}, x̃^m_{i⁻}), x̃^m = W_m e^m + b_m the projected
  (trainable) raw features; no L2 term (MMRec's weight_decay 0).

Where the authors' code and the paper differ (the code is followed; ``edge_sampling: trials`` switches to
the paper's reading): the paper keeps n = ⌈|E|(1 − ρ)⌉ edges sampled by "a multinomial distribution with
n trials" (with replacement: an edge drawn twice is kept once); the code keeps ⌊|E|(1 − ρ)⌋ distinct edges
(``torch.multinomial`` without replacement). Departures from the code, none of which changes Baby's graphs
beyond float rounding: RecBole's [PAD] item 0 has no edges in either graph; duplicate (user, item) rows count once (the
code's full graph dedups them, its pruning weights do not); a degree 0 gets weight 0 instead of the code's
+1e-7; the code's unused keys (``lambda_coeff``, ``cf_model``, ``degree_ratio``, ``weight_size``) are not
read, and ``feat_embed_dim`` is ``embedding_size`` (the modality BPR multiplies u by x̃^m: they must agree).
"""

import math

import numpy as np
import torch
import torch.nn as nn
from recbole.utils import InputType

from recbole_micro.errors import ConfigError
from recbole_micro.model import graphs
from recbole_micro.model.losses import bpr_loss
from recbole_micro.model.multimodal_base import MultimodalRecommender
from recbole_micro.model.validation import check_bool, check_choice, check_int, check_multimodal_config, check_number

EDGE_SAMPLINGS = ("distinct", "trials")


def training_edges(dataset, device):
    """``(users, items)`` LongTensors of the distinct (user, item) pairs of the TRAINING interactions."""
    r = dataset.inter_matrix(form="csr").astype(np.float32).tocoo()  # csr sums duplicate rows: one pair each
    users = torch.from_numpy(r.row.astype(np.int64)).to(device)
    items = torch.from_numpy(r.col.astype(np.int64)).to(device)
    return users, items


def modality_weights(modalities, image_weight):
    r"""α_m of S = Σ_m α_m S̃^m: the authors' α for ``image`` and 1 − α shared by the other modalities; one
    modality alone weighs 1 (the code's image-only / text-only cases); no ``image``: equal weights."""
    if len(modalities) == 1:
        return [1.0]
    if "image" not in modalities:
        return [1.0 / len(modalities)] * len(modalities)
    rest = (1.0 - image_weight) / (len(modalities) - 1)
    return [image_weight if m == "image" else rest for m in modalities]


class FREEDOM(MultimodalRecommender):
    r"""FREEDOM: a frozen multimodal kNN item graph and a degree-sensitively pruned user–item graph.

    score(u, i) = ⟨u, ī + h̃_i⟩ (module docstring); loss = L_BPR + λ Σ_m L_BPR(u, x̃^m).
    """

    input_type = InputType.PAIRWISE
    loss_names = ("bpr", "modal_bpr")
    content_part = "h̃ = S·X_i over the frozen feature graph"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)  # check_config, embedding_size, modalities, evaluation cache
        self.knn_k = config["knn_k"]
        self.n_mm_layers = config["n_mm_layers"]
        self.n_ui_layers = config["n_ui_layers"]
        self.reg_weight = config["reg_weight"]
        self.dropout = config["dropout"]
        self.edge_sampling = config["edge_sampling"]
        self.mm_image_weight = config["mm_image_weight"]

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        # raw features E_m (trainable by default, as the authors') and their projections x̃^m = W_m e^m + b_m
        self.features = self.feature_embeddings(dataset, freeze=config["freeze_features"])
        self.projections = nn.ModuleDict(
            {m: nn.Linear(self.features[m].weight.shape[1], self.embedding_size) for m in self.modalities}
        )

        # S: built once from the raw features, never updated (the "frozen" graph)
        alphas = modality_weights(self.modalities, self.mm_image_weight)
        parts = [graphs.pad_graph(graphs.binary_knn_graph(self.features[m].weight.detach()[1:], self.knn_k, "sym",
                                                          config["knn_chunk_size"]))
                 for m in self.modalities]
        self.item_adj = graphs.weighted_sum(parts, alphas)

        # the full user–item graph (evaluation) and the per-edge pruning weights p_k = 1/√(d_u d_i)
        self.edge_users, self.edge_items = training_edges(dataset, self.device)
        self.full_adj = graphs.bipartite_graph(self.edge_users, self.edge_items, self.n_users, self.n_items)
        self.edge_weights = graphs.degree_edge_weights(self.edge_users, self.edge_items, self.n_users, self.n_items)
        self.pruned_adj = None
        self.kept_edges = None  # indices (into edge_users / edge_items) of this epoch's kept interactions

    def check_config(self, config, dataset):
        check_multimodal_config(config, dataset)
        for key, low in (("knn_k", 1), ("knn_chunk_size", 1), ("n_mm_layers", 0), ("n_ui_layers", 0)):
            check_int(config, key, low)
        n_real_items = dataset.item_num - 1
        if config["knn_k"] >= n_real_items:
            raise ConfigError(f"config key 'knn_k' is {config['knn_k']!r}; it must be an integer in [1, {n_real_items - 1}] "
                              f"(fewer than the {n_real_items} items)")
        check_number(config, "dropout", 0.0, 1.0, high_open=True)  # the fraction pruned; 1 would keep nothing
        check_number(config, "mm_image_weight", 0.0, 1.0)
        check_choice(config, "edge_sampling", EDGE_SAMPLINGS)
        check_bool(config, "freeze_features")

    # ------------------------------------------------------------------ the denoised user–item graph
    def prune(self):
        r"""Draw this epoch's kept interactions (§3.1.2) and build A_ρ = D^-1/2 A_ρ D^-1/2 on them."""
        if self.dropout <= 0.0:
            self.kept_edges = torch.arange(self.edge_users.numel(), device=self.edge_users.device)
            self.pruned_adj = self.full_adj
            return
        n_edges = self.edge_users.numel()
        if self.edge_sampling == "trials":  # the paper: n = ⌈|E|(1 − ρ)⌉ independent draws
            kept = graphs.sample_edges(self.edge_weights, math.ceil(n_edges * (1.0 - self.dropout)), replacement=True)
        else:  # the code: ⌊|E|(1 − ρ)⌋ distinct edges
            kept = graphs.sample_edges(self.edge_weights, int(n_edges * (1.0 - self.dropout)))
        self.kept_edges = kept
        self.pruned_adj = graphs.bipartite_graph(self.edge_users[kept], self.edge_items[kept], self.n_users,
                                                 self.n_items, dtype=self.edge_weights.dtype)

    def ui_graph(self):
        """A_ρ while training (drawn on the first batch of every epoch), the full graph otherwise."""
        if not self.training:
            return self.full_adj
        if self.pruned_adj is None:
            self.prune()
        return self.pruned_adj

    def train(self, mode=True):
        """RecBole calls ``model.train()`` at every epoch start: the next training batch draws a new A_ρ
        (the authors' ``pre_epoch_processing``)."""
        if mode:
            self.pruned_adj = None
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        """Move the (non-parameter) graphs and edge lists along with ``.to(device)``."""
        module = super()._apply(fn, *args, **kwargs)
        self.item_adj, self.full_adj = fn(self.item_adj), fn(self.full_adj)
        self.edge_users, self.edge_items, self.edge_weights = fn(self.edge_users), fn(self.edge_items), fn(self.edge_weights)
        self.pruned_adj = self.kept_edges = None
        return module

    # ------------------------------------------------------------------ embeddings and loss
    def forward(self):
        r"""(u, ī + h̃) and h̃ = S^L X_i."""
        h = graphs.propagate(self.item_adj, self.item_embedding.weight, self.n_mm_layers)
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        out = graphs.mean_propagate(self.ui_graph(), ego, self.n_ui_layers)
        users, items = out[: self.n_users], out[self.n_users :]
        return users, items + h, h

    def scoring_content(self):
        """(u, ī + h̃, h̃)."""
        return self.forward()

    def projected_features(self, modality):
        r"""x̃^m = W_m e^m + b_m for all N rows."""
        return self.projections[modality](self.features[modality].weight)

    def losses(self, interaction):
        users, items, _ = self.forward()
        u = users[interaction[self.USER_ID]]
        pos, neg = interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        loss = bpr_loss(u, items[pos], items[neg])
        modal = sum(bpr_loss(u, x[pos], x[neg]) for x in map(self.projected_features, self.modalities))
        return loss, self.reg_weight * modal
