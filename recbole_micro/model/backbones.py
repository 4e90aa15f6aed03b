"""Collaborative-filtering backbones of MICRO (``cf_model``): LightGCN, NGCF and MF.

All three map the ego embeddings E⁰ = [X_u; X_i] to the final user and item embeddings; the
multimodal item representation is added to the item side afterwards (MICRO Eq. 13).
"""

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn as nn
import torch.nn.functional as F

from recbole_micro.errors import ConfigError
from recbole_micro.model.graphs import sparse_mm

CF_MODELS = ("lightgcn", "ngcf", "mf")
UI_NORMS = ("rw", "sym")


def interaction_graph(dataset, norm="rw", device="cpu"):
    r"""Normalised user–item graph of the TRAINING interactions, (U+N) × (U+N) sparse.

    ``rw``: D^-1 (A + I), the reference code's row normalisation with self-loops;
    ``sym``: D^-1/2 A D^-1/2, LightGCN's (He et al. 2020, Eq. 7) and RecBole's.
    """
    if norm not in UI_NORMS:
        raise ConfigError(f"config key 'ui_norm' is {norm!r}; use one of {UI_NORMS}")
    r = dataset.inter_matrix(form="coo").astype(np.float32)
    n_users, n_items = r.shape
    a = sp.bmat([[None, r], [r.T, None]], format="csr")
    if norm == "rw":
        a = a + sp.eye(n_users + n_items, dtype=np.float32, format="csr")
    degree = np.asarray(a.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        inv = np.where(degree > 0, degree ** (-1.0 if norm == "rw" else -0.5), 0.0).astype(np.float32)
    a = sp.diags(inv) @ a if norm == "rw" else sp.diags(inv) @ a @ sp.diags(inv)
    a = a.tocoo()
    index = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))
    values = torch.from_numpy(a.data.astype(np.float32))
    return torch.sparse_coo_tensor(index, values, a.shape, check_invariants=False).coalesce().to(device)


class Backbone(nn.Module):
    r"""``forward(user_emb, item_emb) -> (users, items)`` for ``cf_model`` ∈ {lightgcn, ngcf, mf}.

    * lightgcn: E^{l+1} = Â E^l, output mean(E⁰..E^L) (He et al. 2020);
    * ngcf: E^{l+1} = LeakyReLU(W₁ Â E^l) + LeakyReLU(W₂ (E^l ⊙ Â E^l)), dropout, L2-normalised layer
      outputs averaged (as the reference code does; Wang et al. 2019 concatenate instead);
    * mf: the ego embeddings themselves.
    """

    def __init__(self, cf_model, weight_size, embedding_size, adj, n_users, dropout=0.1):
        super().__init__()
        if cf_model not in CF_MODELS:
            raise ConfigError(f"config key 'cf_model' is {cf_model!r}; use one of {CF_MODELS}")
        self.cf_model = cf_model
        self.n_layers = len(weight_size)
        self.adj = adj
        self.n_users = n_users
        if cf_model == "ngcf":
            dims = [embedding_size] + list(weight_size)
            self.gc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
            self.bi = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
            self.dropout = nn.Dropout(dropout)

    def forward(self, user_emb, item_emb):
        if self.cf_model == "mf":
            return user_emb, item_emb
        ego = torch.cat([user_emb, item_emb], dim=0)
        layers = [ego]
        for layer in range(self.n_layers):
            side = sparse_mm(self.adj, ego)  # CSR products, transpose cached once per graph
            if self.cf_model == "lightgcn":
                ego = side
                layers.append(ego)
            else:
                ego = F.leaky_relu(self.gc[layer](side)) + F.leaky_relu(self.bi[layer](ego * side))
                ego = self.dropout(ego)
                layers.append(F.normalize(ego, p=2, dim=1))
        out = torch.stack(layers, dim=1).mean(dim=1)
        return out[: self.n_users], out[self.n_users :]
