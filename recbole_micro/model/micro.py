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

from recbole_micro.model import graphs
from recbole_micro.model.losses import (
    bpr_loss, contrastive_loss, embedding_loss, sample_negatives,
)
from recbole_micro.model.multimodal import MultimodalGraphRecommender

__all__ = ["MICRO", "MultimodalGraphRecommender"]  # the shared base lives in model/multimodal.py


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
        # full: the exact reference loss over all items; sampled: contrastive_samples items per step
        # as anchors and negatives (validated in model/validation.py)
        self.contrastive_mode = config["contrastive_mode"] or "full"
        self.contrastive_samples = int(config["contrastive_samples"] or 1024)
        self.contrastive_precision = config["contrastive_precision"] or "fp32"  # fp32 | bf16 blocks

        self.init_cf(config, dataset)  # X_u, X_i and the CF backbone (shared with LATTICE)
        # attention query q(x) = w_2ᵀ tanh(W_1 x + b_1), shared by the modalities (Eq. 9)
        self.query = nn.Sequential(
            nn.Linear(self.embedding_size, self.embedding_size),
            nn.Tanh(),
            nn.Linear(self.embedding_size, 1, bias=False),
        )
        self.init_parameters(config)  # init_scheme: reference = xavier ID embeddings, PyTorch's default Linear init

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
        users, items = self.cf_embeddings(fused)  # u_CF, i_CF + h/‖h‖ (Eq. 13)
        return users, items, modality_embeddings, fused

    def losses(self, interaction):
        user = interaction[self.USER_ID]
        pos = interaction[self.ITEM_ID]
        neg = interaction[self.NEG_ITEM_ID]
        users, items, modality_embeddings, fused = self.forward()
        u, i_pos, i_neg = users[user], items[pos], items[neg]
        loss_bpr = bpr_loss(u, i_pos, i_neg)
        loss_emb = embedding_loss(self.reg_weight, u, i_pos, i_neg)
        # contrastive fusion over all real items (row 0 is [PAD]); sampled mode: one uniform sample of
        # contrastive_samples items per step, shared by the modalities, serves as anchors and negatives
        z_fused, z_modal, population = fused[1:], [h_m[1:] for h_m in modality_embeddings], None
        if self.contrastive_mode == "sampled":
            population = z_fused.shape[0]
            sample = sample_negatives(population, int(self.contrastive_samples), fused.device)
            z_fused, z_modal = z_fused[sample], [z[sample] for z in z_modal]
        loss_cl = sum(
            contrastive_loss(z, z_fused, self.temperature, self.contrastive_chunk_size, population=population,
                             precision=self.contrastive_precision)
            for z in z_modal
        )
        return loss_bpr, loss_emb, self.loss_ratio * loss_cl
