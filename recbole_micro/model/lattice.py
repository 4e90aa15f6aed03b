r"""LATTICE
################################################
Reference:
    Jinghao Zhang, Yanqiao Zhu, Qiang Liu, Shu Wu, Shuhui Wang, Liang Wang. "Mining Latent Structures
    for Multimedia Recommendation." ACM MM 2021 (arXiv 2104.09036).

Reference code: CRIPAC-DIG/LATTICE (``codes/Models.py``, commit 1b72fe7); summarised in
``../shared/design/micro.md`` §9. LATTICE is MICRO's predecessor: the same original and learned kNN
item graphs, item-graph convolution and CF backbones (all in ``multimodal.py`` / ``graphs.py``), but

* ONE item graph for all modalities, mixed with global modality weights α = softmax(w), w init 0.5
  for every modality (equal weights):
  learned  Â = symnorm(Σ_m α_m kNN(F_m))   (UNnormalised kNN graphs summed, normalised once),
  original S = Σ_m α_m S̃_m                (the per-modality normalised original graphs),
  A = (1 − λ) Â + λ S;
* h = A^L X_i, ĩ = i_CF + h/‖h‖ (no attention fusion);
* loss = L_BPR + L_emb (no contrastive term).

Initialisation as the reference (``init_scheme: reference``): xavier-uniform for the ID embeddings,
PyTorch's defaults for the linear layers (projections, NGCF weights); ``init_scheme: xavier`` applies
xavier with zero biases to the linear layers too.
"""

import torch
import torch.nn as nn

from recbole_micro.model import graphs
from recbole_micro.model.multimodal import MultimodalGraphRecommender


class LATTICE(MultimodalGraphRecommender):
    r"""LATTICE: one learned item graph over all modalities added to a CF backbone (LightGCN by default).

    score(u, i) = ⟨u_CF, i_CF + h_i/‖h_i‖⟩, h = A^L X_i; loss = L_BPR + L_emb.
    ``item_adj`` is a single sparse N × N graph (MICRO's is a ``{modality: graph}`` dict).
    """

    loss_names = ("bpr", "emb")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.reg_weight = config["reg_weight"]
        # w: one logit per modality, all 0.5 (the reference's torch.Tensor([0.5, 0.5]))
        self.modal_weight = nn.Parameter(torch.full((len(self.modalities),), 0.5, device=self.device))
        self.init_cf(config, dataset)
        self.init_parameters(config)  # init_scheme: reference = xavier ID embeddings, PyTorch's default Linear init

    def modality_weights(self):
        r"""α = softmax(w), in the order of ``self.modalities``."""
        return torch.softmax(self.modal_weight, dim=0)

    def learned_adj(self):
        r"""A = (1 − λ)·symnorm(Σ_m α_m kNN(F_m)) + λ·Σ_m α_m S̃_m (graphs over items 1..N−1, [PAD] empty)."""
        alpha = self.modality_weights()
        learned = graphs.summed_knn_graph(
            [self.projected_features(m)[1:] for m in self.modalities],
            alpha,
            self.knn_k,
            self.knn_norm,
            self.knn_chunk_size,
            with_grad=True,
        )
        original = graphs.weighted_sum([self.original_adj[m] for m in self.modalities], alpha)
        return graphs.mix_graphs(graphs.pad_graph(learned), original, self.lambda_coeff)

    def forward(self):
        r"""Final user and item embeddings, plus h = A^L X_i."""
        h = graphs.propagate(self.item_graph(), self.item_embedding.weight, self.n_item_layers)
        users, items = self.cf_embeddings(h)
        return users, items, h

    def losses(self, interaction):
        users, items, _ = self.forward()
        return self.pairwise_losses(interaction, users, items, self.reg_weight)
