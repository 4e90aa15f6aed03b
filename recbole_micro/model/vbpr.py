r"""VBPR
################################################
Reference:
    Ruining He, Julian McAuley. "VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback."
    AAAI 2016 (arXiv 1510.01784).

Authors' code as used by the multimodal-recommendation literature: MMRec (enoche/MMRec,
``src/models/vbpr.py``, ``src/configs/model/VBPR.yaml``), read for its facts only. Defaults follow it:

* score (the paper's predictor α + β_u + β_i + γ_uᵀγ_i + θ_uᵀ(E f_i) + β'ᵀf_i without the terms the code
  drops): x̂_ui = ⟨[γ_u; θ_u], [γ_i; E f_i + b]⟩
  = γ_uᵀγ_i + θ_uᵀ(E f_i + b), with f_i the concatenation of ALL the item's modality features (MMRec
  concatenates text and image; the paper has one visual feature) — fixed, not trained;
* loss (the paper's BPR-Opt) L = −mean log σ(x̂_ui − x̂_uj) + reg_weight · R on the batch's output
  embeddings u = [γ_u; θ_u], i⁺, i⁻;
* initialisation as MMRec: γ, θ and γ_i xavier-uniform, E xavier-normal with a zero bias b.

Where the code and the paper differ (code by default, the paper's form a switch where cheap):

* ``item_bias`` (False = code): the paper's predictor also has the item bias β_i and the visual bias
  β'ᵀ f_i (α and β_u cancel in x̂_ui − x̂_uj); True adds both (zero-initialised; β_i joins R, β' is
  left unregularised as the code leaves E);
* ``reg_norm`` (``frobenius`` = code, MMRec's ``EmbLoss``): R = (‖u‖ + ‖i⁺‖ + ‖i⁻‖)/B with ‖·‖ the
  un-squared Frobenius norm of the B × 2d batch matrix; ``squared`` = the paper's λ‖Θ‖²:
  R = (‖u‖² + ‖i⁺‖² + ‖i⁻‖²)/B;
* not switches: the code's projection has a bias b (θ_uᵀb is a per-user constant, it cancels in the BPR
  difference), the code regularises E only through the output embeddings (the paper has its own λ_E),
  Adam on mini-batches (the paper: SGD on single triples), BPR as ``logsigmoid`` (MMRec adds 1e-10 inside
  the log).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.utils import InputType

from recbole_micro.model.losses import REG_NORMS, norm_regulariser
from recbole_micro.model.multimodal_base import MultimodalRecommender
from recbole_micro.model.validation import check_bool, check_choice


class VBPR(MultimodalRecommender):
    r"""VBPR: matrix factorisation whose item factor is extended by a linear projection of the item's
    (fixed) content features; BPR loss with uniform negatives."""

    input_type = InputType.PAIRWISE
    loss_names = ("bpr", "reg")
    content_part = "the visual term [0; E f_i + b] (and β'ᵀ f_i): the same as zero"

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.reg_weight = config["reg_weight"]
        self.reg_norm = config["reg_norm"]
        self.item_bias = config["item_bias"]
        d = self.embedding_size
        # f_i: all modalities concatenated (MMRec: text then image; here in `modalities` order), fixed
        features = torch.cat([x for x in self.feature_tensors(dataset).values()], dim=1)
        self.register_buffer("item_features", features, persistent=False)  # rebuilt from the data at load time
        self.user_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * d)))  # [γ_u; θ_u]
        self.item_embedding = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))  # γ_i
        self.projection = nn.Linear(features.shape[1], d)  # E, b
        nn.init.xavier_normal_(self.projection.weight)
        nn.init.zeros_(self.projection.bias)
        if self.item_bias:  # the paper's β_i and β' (zero-initialised)
            self.bias = nn.Parameter(torch.zeros(self.n_items))
            self.visual_bias = nn.Linear(features.shape[1], 1, bias=False)
            nn.init.zeros_(self.visual_bias.weight)

    def check_config(self, config, dataset):
        super().check_config(config, dataset)
        check_choice(config, "reg_norm", REG_NORMS)
        check_bool(config, "item_bias")

    def item_id_tables(self):
        """γ_i, and β_i with ``item_bias``: what ``untrained_item_ids: zero`` blanks for cold items."""
        return [self.item_embedding] + ([self.bias] if self.item_bias else [])

    def item_matrix(self, gamma, beta):
        """[γ; E f_i + b] and, with ``item_bias``, the column β + β'ᵀ f_i, from the ID parts ``gamma``, ``beta``."""
        items = torch.cat([gamma, self.projection(self.item_features)], dim=1)
        if self.item_bias:
            items = torch.cat([items, (beta + self.visual_bias(self.item_features).squeeze(-1)).unsqueeze(-1)], dim=1)
        return items

    def forward(self):
        r"""Users [γ_u; θ_u] (U × 2d) and items [γ_i; E f_i + b] (N × 2d), so that x̂_ui = ⟨u, i⟩; with
        ``item_bias`` one more column each: users 1, items β_i + β'ᵀ f_i."""
        users = self.user_embedding
        if self.item_bias:
            users = torch.cat([users, users.new_ones(users.shape[0], 1)], dim=1)
        return users, self.item_matrix(self.item_embedding, self.bias if self.item_bias else None)

    def scoring_content(self):
        """(users, items, the items with γ_i and β_i zero)."""
        users, items = self.forward()
        beta = torch.zeros_like(self.bias) if self.item_bias else None
        return users, items, self.item_matrix(torch.zeros_like(self.item_embedding), beta)

    def losses(self, interaction):
        r"""(L_BPR, reg_weight · R) of a batch; R on u, i⁺, i⁻ (and, with ``item_bias``, β_{i⁺}, β_{i⁻})."""
        user, pos_id, neg_id = interaction[self.USER_ID], interaction[self.ITEM_ID], interaction[self.NEG_ITEM_ID]
        users, items = self.forward()
        u, pos, neg = users[user], items[pos_id], items[neg_id]
        bpr = -F.logsigmoid((u * pos).sum(-1) - (u * neg).sum(-1)).mean()
        regularised = (u, pos, neg)
        if self.item_bias:  # the factors without the constant / bias column, and the item biases themselves
            regularised = (u[:, :-1], pos[:, :-1], neg[:, :-1], self.bias[pos_id], self.bias[neg_id])
        return bpr, self.reg_weight * norm_regulariser(regularised, u.shape[0], self.reg_norm)
