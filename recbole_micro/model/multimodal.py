r"""``MultimodalGraphRecommender``: the machinery MICRO and LATTICE share.

* raw modality features E_m (trainable or frozen) and their projections F_m = W_m E_m + b_m;
* the original kNN graphs S̃_m of the raw features (built once, ``../shared/design/micro.md`` §1);
* the learned item graphs, rebuilt with gradient on the first training batch of every epoch, reused
  detached by the other batches and rebuilt before every evaluation (§2) — ``item_graph``;
* the collaborative-filtering part: ID embeddings X_u, X_i, the CF backbone (§5) and the scoring
  ĩ = i_CF + h/‖h‖, score(u, i) = ⟨u_CF, ĩ⟩ (§6) with the cached evaluation embeddings;
* the pairwise loss terms L_BPR + L_emb on the output embeddings (§7).

Every kNN, normalisation and propagation goes through ``graphs.py``. A subclass defines what differs:
``learned_adj`` (how the item graph A is built), ``forward`` (what it does with A X_i) and
``losses``. ``forward`` must return the final ``(users, items, ...)`` embeddings first. Features,
config checks, the evaluation cache and scoring come from ``multimodal_base.MultimodalRecommender``.
"""

import torch.nn as nn
import torch.nn.functional as F
from recbole.model.init import xavier_uniform_initialization
from recbole.utils import InputType

from recbole_micro.errors import ConfigError
from recbole_micro.model import graphs
from recbole_micro.model.backbones import Backbone, interaction_graph
from recbole_micro.model.losses import bpr_loss, embedding_loss
from recbole_micro.model.multimodal_base import MultimodalRecommender
from recbole_micro.model.validation import check_micro_config


INIT_SCHEMES = ("reference", "xavier")


def _detached(adj):
    """A graph (sparse tensor) or a ``{modality: graph}`` dict, detached from the autograd graph."""
    if isinstance(adj, dict):
        return {m: a.detach() for m, a in adj.items()}
    return adj.detach()


class MultimodalGraphRecommender(MultimodalRecommender):
    r"""Shared machinery of MICRO and LATTICE: raw features, modality projections, the original kNN
    graphs S̃_m (built once, §3.1) and the learned graphs Â_m (rebuilt every epoch, §3.2).

    Graphs cover the real items 1..N−1; RecBole's ``[PAD]`` item 0 has no edges.
    """

    input_type = InputType.PAIRWISE
    content_part = "h/‖h‖, the item-graph convolution of the ID embeddings"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)  # check_config, embedding_size, modalities, evaluation cache
        self.knn_k = config["knn_k"]
        self.lambda_coeff = config["lambda_coeff"]
        self.knn_norm = config["knn_norm"]
        self.knn_chunk_size = config["knn_chunk_size"]
        self.n_item_layers = config["n_item_layers"]

        # trainable features get their own copy (training would overwrite the dataset's); frozen ones are shared
        self.features = self.feature_embeddings(dataset, freeze=bool(config["freeze_features"]))
        features = {m: self.features[m].weight for m in self.modalities}
        self.projections = nn.ModuleDict(
            {m: nn.Linear(x.shape[1], self.embedding_size) for m, x in features.items()}
        )
        # Original graphs S̃_m from the raw features: fixed, rebuilt identically at load time.
        self.original_adj = {m: self._knn_graph(x.detach(), with_grad=False) for m, x in features.items()}
        self.item_adj = None  # the item graph(s) A of the current epoch
        self._graph_stale = True
        self.backbone = None  # set by init_cf

    def check_config(self, config, dataset):
        check_micro_config(config, dataset)

    # ------------------------------------------------------------------ item graphs
    def _knn_graph(self, features, with_grad):
        adj = graphs.knn_graph(features[1:], self.knn_k, self.knn_norm, self.knn_chunk_size, with_grad)
        return graphs.pad_graph(adj)

    def projected_features(self, modality):
        r"""F_m = W_m E_m + b_m for all N rows ([PAD] included; graphs use rows 1..N−1)."""
        return self.projections[modality](self.features[modality].weight)

    def learned_adj(self):
        r"""A_m = (1 − λ) Â_m + λ S̃_m, with Â_m = kNN(cos(W_m E_m + b_m)) (§3.2), per modality."""
        return {
            m: graphs.mix_graphs(
                self._knn_graph(self.projected_features(m), with_grad=True),
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
        else:
            self.item_adj = _detached(self.item_adj)
        return self.item_adj

    def train(self, mode=True):
        """RecBole calls ``model.train()`` at the start of every epoch: mark the item graphs stale."""
        if mode:
            self._graph_stale = True
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        """Move the (non-parameter) sparse graphs along with ``.to(device)`` (the backbone's: the base class)."""
        module = super()._apply(fn, *args, **kwargs)
        self.original_adj = {m: fn(a) for m, a in self.original_adj.items()}
        self.item_adj = None
        return module

    # ------------------------------------------------------------------ CF part and scoring
    def init_cf(self, config, dataset):
        r"""ID embeddings X_u (U×d), X_i (N×d) and the CF backbone on the training interactions (§5)."""
        self.user_embedding = nn.Embedding(self.n_users, self.embedding_size)
        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size)
        self.backbone = Backbone(
            config["cf_model"],
            config["weight_size"],
            self.embedding_size,
            interaction_graph(dataset, config["ui_norm"], self.device),
            self.n_users,
            config["ngcf_dropout"],
        )

    def init_parameters(self, config):
        r"""``init_scheme``: ``reference`` (default) — xavier-uniform ID embeddings X_u, X_i; every
        ``nn.Linear`` (projections W_m, b_m, MICRO's attention query, NGCF's weights) keeps PyTorch's
        default init (kaiming-uniform weights, uniform ±1/√fan_in biases), as the MICRO and LATTICE
        code does (it re-initialises only the ID embeddings). ``xavier`` — xavier-uniform weights and
        zero biases for every linear layer too (RecBole's ``xavier_uniform_initialization``). The raw
        features stay as loaded."""
        scheme = config["init_scheme"] or "reference"
        if scheme not in INIT_SCHEMES:
            raise ConfigError(f"config key 'init_scheme' is {scheme!r}; use one of {list(INIT_SCHEMES)}")
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        if scheme == "xavier":
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    xavier_uniform_initialization(module)

    def cf_embeddings(self, item_content):
        r"""Final embeddings (Eq. 13): u = u_CF, ĩ = i_CF + h/‖h‖ with h = ``item_content`` (N×d)."""
        users, items = self.backbone(self.user_embedding.weight, self.item_embedding.weight)
        return users, items + F.normalize(item_content, p=2, dim=1)

    def scoring_content(self):
        r"""(u, ĩ, h/‖h‖): ``forward`` returns h last (MICRO the fused h, LATTICE A^L X_i)."""
        outputs = self.forward()
        return outputs[0], outputs[1], F.normalize(outputs[-1], p=2, dim=1)

    def pairwise_losses(self, interaction, users, items, reg_weight):
        r"""(L_BPR, L_emb) of a batch on the final embeddings (§7)."""
        u = users[interaction[self.USER_ID]]
        i_pos = items[interaction[self.ITEM_ID]]
        i_neg = items[interaction[self.NEG_ITEM_ID]]
        return bpr_loss(u, i_pos, i_neg), embedding_loss(reg_weight, u, i_pos, i_neg)
