r"""LGMRec
################################################
Reference:
    Zhiqiang Guo, Jianjun Li, Guohui Li, Chaoyang Wang, Si Shi, Bin Ruan. "LGMRec: Local and Global Graph
    Learning for Multimodal Recommendation." AAAI 2024 (arXiv 2312.16400).

Reference code: enoche/MMRec ``src/models/lgmrec.py`` and ``configs/model/LGMRec.yaml`` (contributed by the
first author), and the authors' georgeguo-cn/LGMRec ``models/lgmrec.py``. Read for the formulas, not copied.

With Â = D^-1/2 A D^-1/2 the symmetric-normalised training user–item graph and R the (unnormalised) U × N
interaction matrix:

* CGE, collaborative graph embedding: E_c = mean(E⁰, ÂE⁰, …, Â^{L_ui}E⁰), E⁰ = [X_u; X_i] (LightGCN;
  ``cf_model: mf`` gives E⁰).
* MGE, modality graph embedding, per modality m: item features F_i^m = E_m W_m (W_m: d_m × d, no bias;
  E_m the FROZEN raw features), user features F_u^m = D_u^-1 R F_i^m (mean of the user's items, no user
  ID embedding), E_m = Â^{L_mm} [F_u^m; F_i^m] (last layer).
* Local embedding: E_lge = E_c + Σ_m E_m/‖E_m‖ (row-wise L2).
* GHE, global hypergraph embedding, per modality: item–hyperedge logits H_i^m = E_m V_m (V_m: d_m × A,
  A = ``hyper_num``), user–hyperedge logits H_u^m = R H_i^m; both through a Gumbel-softmax (τ = 0.2,
  soft) and dropout (keep ``keep_rate``, training only); then L_h layers of
  E_i ← H̃_i (H̃_iᵀ E_i), users H̃_u (H̃_iᵀ E_i), starting from the CGE item embeddings;
  E_ghe = Σ_m [E_u^{m}; E_i^{m}].
* Final: E = E_lge + α E_ghe/‖E_ghe‖; score ⟨e_u, e_i⟩.
* Loss: L_BPR + λ₁ L_HCL + λ₂ L_reg with
  L_HCL = Σ_{u∈batch} InfoNCE(E_u^{m₁}, E_u^{m₂}; all users) + Σ_{i⁺∈batch} InfoNCE(E_i^{m₁}, E_i^{m₂}; all items)
  (τ = 0.2, summed over the batch, the positive in the denominator; m₁ = image, m₂ = text), and
  L_reg = (‖U_b‖ + ‖I⁺_b‖ + ‖I⁻_b‖)/B, the UNSQUARED Frobenius norms of the batch's final embeddings.

Where the authors' two codes differ, MMRec's is followed: the authors' repository overwrites the image
user–hyperedge matrix with the text one's Gumbel-softmax and leaves the text one un-normalised (a typo that
MMRec's copy fixes). Behaviours of the code kept by default, each with a switch: the Gumbel noise is drawn at
evaluation too (``hyper_eval_noise: False`` scores with the noiseless softmax; the code draws it per batch of
evaluated users, here once per evaluation, as the embeddings are cached); the regulariser is the
unsquared norm (``reg_norm: squared`` uses Σ‖·‖²/B). Extensions beyond the code's two modalities: one
modality has no contrastive term, M > 2 modalities sum L_HCL over every pair (m_a, m_b), a < b, in the
order of ``modalities``. RecBole's [PAD] rows are left out of the hyperedges and of the contrastive
candidates (MMRec has no padding row).
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_micro.model import graphs
from recbole_micro.model.losses import bpr_loss, candidate_infonce
from recbole_micro.model.multimodal_base import MultimodalRecommender
from recbole_micro.model.validation import check_bool, check_choice, check_int, check_multimodal_config, check_number

CF_MODELS = ("lightgcn", "mf")
REG_NORMS = ("frobenius", "squared")


def interaction_matrices(dataset, n_users, n_items, device):
    r"""(R, D_u^-1 R, Â): the U × N interaction matrix of the distinct training pairs, its row-mean form
    and the symmetric-normalised (U+N)² user–item graph."""
    r = dataset.inter_matrix(form="csr").astype(np.float32).tocoo()  # duplicates counted once
    users = torch.from_numpy(r.row.astype(np.int64)).to(device)
    items = torch.from_numpy(r.col.astype(np.int64)).to(device)
    ones = torch.ones(users.numel(), device=device)
    degree = torch.zeros(n_users, device=device).index_add_(0, users, ones)
    interactions = graphs.rectangular(users, items, ones, (n_users, n_items))
    mean = graphs.rectangular(users, items, 1.0 / degree[users], (n_users, n_items))
    return interactions, mean, graphs.bipartite_graph(users, items, n_users, n_items)


class LGMRec(MultimodalRecommender):
    r"""LGMRec: decoupled local (collaborative + modality) graph embeddings plus a global hypergraph embedding.

    score(u, i) = ⟨e_u, e_i⟩, E = E_c + Σ_m norm(E_m) + α norm(E_ghe); loss = BPR + λ₁ L_HCL + λ₂ L_reg.
    """

    input_type = InputType.PAIRWISE
    loss_names = ("bpr", "hcl", "reg")
    content_part = "Σ_m E_m/‖E_m‖ + α E_ghe/‖E_ghe‖, all but the collaborative embedding E_c"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)  # check_config, embedding_size, modalities, evaluation cache
        self.cf_model = config["cf_model"]
        self.n_ui_layers = config["n_ui_layers"]
        self.n_mm_layers = config["n_mm_layers"]
        self.n_hyper_layer = config["n_hyper_layer"]
        self.hyper_num = config["hyper_num"]
        self.keep_rate = config["keep_rate"]
        self.alpha = config["alpha"]
        self.cl_weight = config["cl_weight"]
        self.reg_weight = config["reg_weight"]
        self.temperature = config["temperature"]
        self.hyper_eval_noise = config["hyper_eval_noise"]
        self.reg_norm = config["reg_norm"]

        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.features = self.feature_embeddings(dataset, freeze=True)  # the authors' frozen raw features
        dims = {m: self.features[m].weight.shape[1] for m in self.modalities}
        # W_m (d_m × d) and V_m (d_m × A), xavier-uniform as the authors'
        self.transforms = nn.ParameterDict(
            {m: nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, self.embedding_size))) for m, d in dims.items()})
        self.hyperedges = nn.ParameterDict(
            {m: nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, self.hyper_num))) for m, d in dims.items()})
        self.drop = nn.Dropout(p=1.0 - self.keep_rate)
        self.interactions, self.user_mean, self.norm_adj = interaction_matrices(
            dataset, self.n_users, self.n_items, self.device)

    def check_config(self, config, dataset):
        check_multimodal_config(config, dataset)
        check_choice(config, "cf_model", CF_MODELS)
        check_choice(config, "reg_norm", REG_NORMS)
        for key, low in (("n_ui_layers", 0), ("n_mm_layers", 0), ("n_hyper_layer", 1), ("hyper_num", 1)):
            check_int(config, key, low)
        check_number(config, "keep_rate", 0.0, 1.0, low_open=True)  # the kept fraction of the dependencies
        for key in ("alpha", "cl_weight", "reg_weight"):
            check_number(config, key, 0.0)
        check_number(config, "temperature", 0.0, low_open=True)
        check_bool(config, "hyper_eval_noise")

    def _apply(self, fn, *args, **kwargs):
        """Move the (non-parameter) sparse matrices along with ``.to(device)``."""
        module = super()._apply(fn, *args, **kwargs)
        self.interactions, self.user_mean, self.norm_adj = fn(self.interactions), fn(self.user_mean), fn(self.norm_adj)
        return module

    # ------------------------------------------------------------------ local embeddings
    def collaborative_embeddings(self):
        r"""E_c (CGE): LightGCN's layer mean on Â, or the ego embeddings (``cf_model: mf``)."""
        ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
        return ego if self.cf_model == "mf" else graphs.mean_propagate(self.norm_adj, ego, self.n_ui_layers)

    def modality_embeddings(self, modality):
        r"""E_m (MGE) = Â^{L_mm} [D_u^-1 R F_i^m; F_i^m], F_i^m = E_m W_m."""
        items = self.features[modality].weight @ self.transforms[modality]
        users = graphs.sparse_mm(self.user_mean, items)
        return graphs.propagate(self.norm_adj, torch.cat([users, items]), self.n_mm_layers)

    # ------------------------------------------------------------------ global embeddings
    def hyperedge_dependencies(self, modality):
        r"""(H̃_u, H̃_i): soft Gumbel-softmax (τ) of R H_i and H_i = E_m V_m over the real items (row 0 of H̃_i,
        [PAD], is zero), with dropout while training. The noise is drawn in evaluation too unless
        ``hyper_eval_noise`` is False."""
        real = self.features[modality].weight[1:] @ self.hyperedges[modality]
        logits_items = torch.cat([real.new_zeros(1, self.hyper_num), real])  # [PAD] row: no features
        logits_users = graphs.sparse_mm(self.interactions, logits_items)
        if self.training or self.hyper_eval_noise:
            items = F.gumbel_softmax(logits_items, tau=self.temperature, hard=False, dim=1)
            users = F.gumbel_softmax(logits_users, tau=self.temperature, hard=False, dim=1)
        else:
            items = torch.softmax(logits_items / self.temperature, dim=1)
            users = torch.softmax(logits_users / self.temperature, dim=1)
        items = torch.cat([items[:1] * 0.0, items[1:]])  # [PAD] belongs to no hyperedge
        return self.drop(users), self.drop(items)

    def embedding_parts(self):
        r"""(E_c, Σ_m E_m/‖E_m‖, E_ghe/‖E_ghe‖, {modality: (E_u^m, E_i^m)} of the hypergraph), users then items."""
        collaborative = self.collaborative_embeddings()
        modal = sum(F.normalize(self.modality_embeddings(m), p=2, dim=1) for m in self.modalities)
        hyper = {}
        for m in self.modalities:
            user_hyper, item_hyper = self.hyperedge_dependencies(m)
            hyper[m] = graphs.hypergraph_propagate(item_hyper, user_hyper, collaborative[self.n_users :],
                                                   self.n_hyper_layer)
        global_ = F.normalize(sum(torch.cat(hyper[m]) for m in self.modalities), p=2, dim=1)
        return collaborative, modal, global_, hyper

    def forward(self):
        r"""(users, items, {modality: (E_u^m, E_i^m)} of the hypergraph); E = E_c + Σ_m norm(E_m) + α norm(E_ghe)."""
        collaborative, modal, global_, hyper = self.embedding_parts()
        out = collaborative + modal + self.alpha * global_
        return out[: self.n_users], out[self.n_users :], hyper

    def scoring_content(self):
        r"""(users, items, Σ_m norm(E_m) + α norm(E_ghe) of the items): E without E_c."""
        collaborative, modal, global_, _ = self.embedding_parts()
        out = collaborative + modal + self.alpha * global_
        content = modal + self.alpha * global_
        return out[: self.n_users], out[self.n_users :], content[self.n_users :]

    # ------------------------------------------------------------------ loss
    def hypergraph_contrastive(self, hyper, user, pos):
        r"""L_HCL: for every modality pair (a, b), users of the batch and their positives, anchor modality a,
        positive and candidates (every real user / item) modality b."""
        loss = hyper[self.modalities[0]][0].new_zeros(())  # one modality: no pair, a zero term
        for k, a in enumerate(self.modalities):
            for b in self.modalities[k + 1 :]:
                (users_a, items_a), (users_b, items_b) = hyper[a], hyper[b]
                loss = loss + candidate_infonce(users_a[user], users_b[user], users_b[1:], self.temperature)
                loss = loss + candidate_infonce(items_a[pos], items_b[pos], items_b[1:], self.temperature)
        return loss

    def regulariser(self, *embeddings):
        r"""(Σ ‖e‖)/B, the Frobenius norms of the batch's embeddings (the code), or (Σ ‖e‖²)/B (``squared``)."""
        if self.reg_norm == "squared":
            return sum(e.pow(2).sum() for e in embeddings) / embeddings[-1].shape[0]
        return sum(torch.linalg.norm(e) for e in embeddings) / embeddings[-1].shape[0]

    def losses(self, interaction):
        users, items, hyper = self.forward()
        user, pos, neg = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        u, i_pos, i_neg = users[user], items[pos], items[neg]
        return (bpr_loss(u, i_pos, i_neg),
                self.cl_weight * self.hypergraph_contrastive(hyper, user, pos),
                self.reg_weight * self.regulariser(u, i_pos, i_neg))
