r"""BM3
################################################
Reference:
    Xin Zhou, Hongyu Zhou, Yong Liu, Zhiwei Zeng, Chunyan Miao, Pengwei Wang, Yuan You, Feijun Jiang.
    "Bootstrap Latent Representations for Multi-modal Recommendation." WWW 2023 (arXiv 2207.05969).

Authors' code: enoche/BM3 (``src/models/bm3.py``, README's best hyper-parameters) and the same model in
MMRec (``src/models/bm3.py``, ``src/configs/model/BM3.yaml``), read for their facts only. Defaults follow it:

* encoder: LightGCN over the symmetrically normalised user–item graph D^-1/2 A D^-1/2 (no self
  loops), h = mean(E⁰..E^L) (``backbones.Backbone``), plus the item's ID embedding as a residual:
  h_u = h_u^LGN, h_i = h_i^LGN + e_i; modality m: h_m = E_m W_m + b_m (features trained, as the code);
* contrastive view generator: online h̃ = f_p(h) = h W_p + b_p (one predictor shared by users, items and
  modalities); target ḣ = dropout_p(sg(h)) — a stop-gradient copy with dropout, no negative samples;
* multi-modal contrastive loss, per batch of observed (u, i) pairs, C(a, b) = 1 − mean cos(a, b):
  L = C(h̃_u, ḣ_i) + C(h̃_i, ḣ_u)                                        (graph reconstruction)
    + cl_weight · Σ_m [C(h̃_m,i, ḣ_i) + C(h̃_m,i, ḣ_m,i)]                 (inter-modality alignment, masked features)
    + reg_weight · R(h_u over all users, h_i over all items);
* score: s(u, i) = ⟨h̃_u, h̃_i⟩ (online representations after the predictor).

Dropout draws one mask per distinct user / item of the batch (the code drops out the full matrices and
then indexes them: the same distribution; only the batch's rows are computed here).

Where the code and the paper differ (code by default):

* C: the code's 1 − cos; the paper's negative cosine −cos (a constant apart: same gradients);
* the code weights the two multimodal terms by ``cl_weight`` = 2.0 (MMRec's BM3.yaml), a fixed value outside
  the searched grid (layers × dropout × reg_weight);
* ``reg_norm`` (``frobenius`` = code, MMRec's ``EmbLoss``): R = (‖H_U‖ + ‖H_I‖)/N with un-squared
  Frobenius norms of ALL users' and items' h (not the batch's), N the number of items; ``squared`` =
  the usual L2 form (‖H_U‖² + ‖H_I‖²)/N.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_micro.model.backbones import Backbone, interaction_graph
from recbole_micro.model.losses import REG_NORMS, norm_regulariser
from recbole_micro.model.multimodal_base import MultimodalRecommender
from recbole_micro.model.validation import check_bool, check_choice, check_int, check_number


def cosine_loss(online, target):
    r"""C(a, b) = 1 − mean_rows cos(a, b) (the target is used as given: detach it before)."""
    return 1.0 - F.cosine_similarity(online, target, dim=-1).mean()


class BM3(MultimodalRecommender):
    r"""BM3: a LightGCN encoder trained without negatives by bootstrapped (dropout, stop-gradient) target
    views of users, items and item modality features."""

    input_type = InputType.POINTWISE  # observed (user, item) pairs only: train_neg_sample_args: ~
    loss_names = ("rec", "reg", "multimodal")

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.n_layers = config["n_layers"]
        self.reg_weight = config["reg_weight"]
        self.cl_weight = config["cl_weight"]
        self.dropout = config["dropout"]
        self.reg_norm = config["reg_norm"]
        d = self.embedding_size
        self.user_embedding = nn.Embedding(self.n_users, d)
        self.item_embedding = nn.Embedding(self.n_items, d)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.predictor = nn.Linear(d, d)  # f_p; bias keeps PyTorch's default init, as the code
        nn.init.xavier_normal_(self.predictor.weight)
        self.features = self.feature_embeddings(dataset, freeze=bool(config["freeze_features"]))
        self.projections = nn.ModuleDict()
        for m in self.modalities:
            self.projections[m] = nn.Linear(self.features[m].weight.shape[1], d)
            nn.init.xavier_normal_(self.projections[m].weight)
        self.backbone = Backbone("lightgcn", [d] * self.n_layers, d, interaction_graph(dataset, "sym", self.device),
                                 self.n_users)

    def check_config(self, config, dataset):
        super().check_config(config, dataset)
        check_int(config, "n_layers", low=0)
        check_number(config, "dropout", low=0.0, high=1.0, high_open=True)
        check_number(config, "cl_weight", low=0.0)
        check_choice(config, "reg_norm", REG_NORMS)
        check_bool(config, "freeze_features")

    def forward(self):
        r"""h_u (U × d) and h_i = h_i^LGN + e_i (N × d), before the predictor."""
        users, items = self.backbone(self.user_embedding.weight, self.item_embedding.weight)
        return users, items + self.item_embedding.weight

    def scoring_embeddings(self):
        r"""The online representations h̃ = f_p(h) that the scores use."""
        users, items = self.forward()
        return self.predictor(users), self.predictor(items)

    def target_view(self, x):
        r"""ḣ = dropout_p(sg(x)): the bootstrapped target (no gradient)."""
        return F.dropout(x.detach(), self.dropout, training=True)

    def losses(self, interaction):
        r"""(L_rec, reg_weight · R, cl_weight · (L_align + L_mask)) of a batch of observed (u, i) pairs."""
        users, items = self.forward()
        user_ids, user_row = torch.unique(interaction[self.USER_ID], return_inverse=True)
        item_ids, item_row = torch.unique(interaction[self.ITEM_ID], return_inverse=True)
        h_u, h_i = users[user_ids], items[item_ids]  # distinct rows: one dropout mask per user / item
        target_u, target_i = self.target_view(h_u)[user_row], self.target_view(h_i)[item_row]
        online_u, online_i = self.predictor(h_u)[user_row], self.predictor(h_i)[item_row]
        rec = cosine_loss(online_u, target_i) + cosine_loss(online_i, target_u)
        multimodal = 0.0
        for m in self.modalities:
            h_m = self.projections[m](self.features[m](item_ids))
            online_m, target_m = self.predictor(h_m)[item_row], self.target_view(h_m)[item_row]
            multimodal = multimodal + cosine_loss(online_m, target_i) + cosine_loss(online_m, target_m)
        # R over every real user and item ([PAD] row 0 excluded), divided by the number of real items
        reg = norm_regulariser((users[1:], items[1:]), self.n_items - 1, self.reg_norm)
        return rec, self.reg_weight * reg, self.cl_weight * multimodal
