r"""MICRO
################################################
Reference:
    Jinghao Zhang, Yanqiao Zhu, Qiang Liu, Mengqi Zhang, Shu Wu, Liang Wang. "Latent Structure Mining
    with Contrastive Modality Fusion for Multimedia Recommendation." IEEE TKDE 2022 (arXiv 2111.00678).

Reference code: CRIPAC-DIG/MICRO (``codes/Models.py``); its behaviour is summarised in
``../shared/design/micro.md`` and reproduced here by default.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.model.init import xavier_uniform_initialization
from recbole.utils import InputType

from recbole_micro.model import graphs
from recbole_micro.model.backbones import Backbone, interaction_graph
from recbole_micro.model.losses import bpr_loss, contrastive_loss, embedding_loss
from recbole_micro.model.validation import check_micro_config


class MultimodalGraphRecommender(GeneralRecommender):
    r"""Shared machinery of MICRO and LATTICE: raw features, modality projections, the original kNN
    graphs S̃_m (built once, §3.1) and the learned graphs Â_m (rebuilt every epoch, §3.2).

    Graphs cover the real items 1..N−1; RecBole's ``[PAD]`` item 0 has no edges.
    """

    input_type = InputType.PAIRWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_micro_config(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.knn_k = config["knn_k"]
        self.lambda_coeff = config["lambda_coeff"]
        self.knn_norm = config["knn_norm"]
        self.knn_chunk_size = config["knn_chunk_size"]
        self.n_item_layers = config["n_item_layers"]
        self.modalities = list(dataset.modality_features)

        features = {m: x.to(self.device) for m, x in dataset.modality_features.items()}
        self.features = nn.ModuleDict(
            {m: nn.Embedding.from_pretrained(x, freeze=config["freeze_features"]) for m, x in features.items()}
        )
        self.projections = nn.ModuleDict(
            {m: nn.Linear(x.shape[1], self.embedding_size) for m, x in features.items()}
        )
        # Original graphs S̃_m from the raw features: fixed, rebuilt identically at load time.
        self.original_adj = {m: self._knn_graph(x, with_grad=False) for m, x in features.items()}
        self.item_adj = None  # A_m of the current epoch
        self._graph_stale = True

    def _knn_graph(self, features, with_grad):
        adj = graphs.knn_graph(features[1:], self.knn_k, self.knn_norm, self.knn_chunk_size, with_grad)
        return graphs.pad_graph(adj)

    def learned_adj(self):
        r"""A_m = (1 − λ) Â_m + λ S̃_m, with Â_m = kNN(cos(W_m E_m + b_m)) (§3.2), per modality."""
        return {
            m: graphs.mix_graphs(
                self._knn_graph(self.projections[m](self.features[m].weight), with_grad=True),
                self.original_adj[m],
                self.lambda_coeff,
            )
            for m in self.modalities
        }

    def item_graph(self):
        r"""The item graphs to convolve with: rebuilt (with gradient) on the first training batch of an
        epoch and before every evaluation, reused detached otherwise (as the reference)."""
        if self._graph_stale or self.item_adj is None or not self.training:
            self.item_adj = self.learned_adj()
            self._graph_stale = False
        elif self.training:
            self.item_adj = {m: a.detach() for m, a in self.item_adj.items()}
        return self.item_adj

    def train(self, mode=True):
        """RecBole calls ``model.train()`` at the start of every epoch: mark the item graphs stale."""
        if mode:
            self._graph_stale = True
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        """Move the (non-parameter) sparse graphs along with ``.to(device)``."""
        module = super()._apply(fn, *args, **kwargs)
        self.original_adj = {m: fn(a) for m, a in self.original_adj.items()}
        self.item_adj = None
        return module


class MICRO(MultimodalGraphRecommender):
    r"""MICRO: per-modality learned item graphs, attention fusion with a contrastive loss, added to a
    collaborative-filtering backbone (LightGCN by default).

    score(u, i) = ⟨u_CF, i_CF + h_i / ‖h_i‖⟩ with h_i = Σ_m β_{m,i} H_{m,i}, H_m = A_m^L X_i (Eq. 6–13);
    loss = L_BPR + L_emb + loss_ratio · Σ_m L_C(H_m, h) (Eq. 14).
    """

    loss_names = ("bpr", "emb", "contrastive")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.reg_weight = config["reg_weight"]
        self.loss_ratio = config["loss_ratio"]
        self.temperature = config["temperature"]
        self.contrastive_chunk_size = config["contrastive_chunk_size"]

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        # attention query q(x) = w_2ᵀ tanh(W_1 x + b_1), shared by the modalities (Eq. 9)
        self.query = nn.Sequential(
            nn.Linear(self.embedding_size, self.embedding_size),
            nn.Tanh(),
            nn.Linear(self.embedding_size, 1, bias=False),
        )
        self.backbone = Backbone(
            config["cf_model"],
            config["weight_size"],
            self.embedding_size,
            interaction_graph(dataset, config["ui_norm"], self.device),
            self.n_users,
            config["ngcf_dropout"],
        )
        self._init_weights()
        self.restore_user_e = None
        self.restore_item_e = None
        self.other_parameter_name = ["restore_user_e", "restore_item_e"]

    def _init_weights(self):
        """Xavier-uniform for the ID embeddings and linear layers (the reference's init); raw
        features stay as loaded."""
        for module in [self.user_embedding, self.item_embedding, self.query, self.projections, self.backbone]:
            module.apply(xavier_uniform_initialization)

    def _apply(self, fn, *args, **kwargs):
        module = super()._apply(fn, *args, **kwargs)
        self.backbone.adj = fn(self.backbone.adj)
        return module

    def fuse(self, modality_embeddings):
        r"""Attention fusion (Eq. 9–10): β = softmax_m q(H_m); h = Σ_m β_m H_m."""
        stacked = torch.stack(modality_embeddings, dim=1)  # (N, M, d)
        weights = torch.softmax(self.query(stacked), dim=1)  # (N, M, 1)
        return (weights * stacked).sum(dim=1)

    def forward(self):
        r"""Final user and item embeddings, plus the per-modality H_m and the fused h."""
        adj = self.item_graph()
        item_ego = self.item_embedding.weight
        modality_embeddings = [graphs.propagate(adj[m], item_ego, self.n_item_layers) for m in self.modalities]
        fused = self.fuse(modality_embeddings)
        users, items = self.backbone(self.user_embedding.weight, item_ego)
        items = items + F.normalize(fused, p=2, dim=1)
        return users, items, modality_embeddings, fused

    def calculate_loss(self, interaction):
        self.restore_user_e = self.restore_item_e = None
        user = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        users, items, modality_embeddings, fused = self.forward()
        u, i_pos, i_neg = users[user], items[pos], items[neg]
        loss_bpr = bpr_loss(u, i_pos, i_neg)
        loss_emb = embedding_loss(self.reg_weight, u, i_pos, i_neg)
        # contrastive fusion over all real items (row 0 is [PAD])
        loss_cl = sum(
            contrastive_loss(h_m[1:], fused[1:], self.temperature, self.contrastive_chunk_size)
            for h_m in modality_embeddings
        )
        return loss_bpr, loss_emb, self.loss_ratio * loss_cl

    def predict(self, interaction):
        users, items = self._eval_embeddings()
        return (users[interaction[self.USER_ID]] * items[interaction[self.ITEM_ID]]).sum(-1)

    def full_sort_predict(self, interaction):
        users, items = self._eval_embeddings()
        return (users[interaction[self.USER_ID]] @ items.t()).view(-1)

    def _eval_embeddings(self):
        """Computed once per evaluation (graphs rebuilt under no_grad), cached until the next training step."""
        if self.restore_user_e is None or self.restore_item_e is None:
            with torch.no_grad():
                self.restore_user_e, self.restore_item_e, _, _ = self.forward()
        return self.restore_user_e, self.restore_item_e
