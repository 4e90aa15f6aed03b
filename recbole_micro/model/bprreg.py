r"""BPRReg
################################################
Reference:
    Steffen Rendle et al. "BPR: Bayesian Personalized Ranking from Implicit Feedback." UAI 2009.

RecBole's ``BPR`` (matrix factorisation, BPR loss, xavier-normal init) plus the regulariser of the BPR
that the multimodal-recommendation literature reports (MMRec, enoche/MMRec ``src/models/bpr.py`` with
``src/common/loss.py`` ``EmbLoss``, read for its facts only):

    L = −mean log σ(x̂_ui − x̂_uj) + reg_weight · R,  R = (‖U_B‖ + ‖I⁺_B‖ + ‖I⁻_B‖) / B

on the batch's user, positive and negative embedding matrices (B × d), ‖·‖ the un-squared Frobenius
norm (``reg_norm: frobenius``, the code) or its square (``squared``, the paper's λ‖Θ‖²). RecBole 1.2.1's
``BPR`` has no such term (only Adam's ``weight_decay`` on every parameter); ``reg_weight: 0`` gives
exactly RecBole's ``BPR``. Defaults: MMRec's set-up (``properties/model/BPRReg.yaml``); grid: MMRec's
``reg_weight`` list (``properties/hyper/BPRReg.hyper``). Why: ``results/baseline-strength.md``.
"""

from recbole.model.general_recommender.bpr import BPR

from recbole_micro.model.losses import REG_NORMS, norm_regulariser
from recbole_micro.model.validation import check_choice, check_number, check_unknown_keys


class BPRReg(BPR):
    r"""RecBole's BPR with MMRec's batch-embedding regulariser ``reg_weight · R`` (module doc)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_unknown_keys(config)
        check_number(config, "reg_weight", low=0.0)
        check_choice(config, "reg_norm", REG_NORMS)
        self.reg_weight = config["reg_weight"]
        self.reg_norm = config["reg_norm"]

    def calculate_loss(self, interaction):
        user = interaction[self.USER_ID]
        u = self.get_user_embedding(user)
        pos = self.get_item_embedding(interaction[self.ITEM_ID])
        neg = self.get_item_embedding(interaction[self.NEG_ITEM_ID])
        loss = self.loss((u * pos).sum(dim=1), (u * neg).sum(dim=1))
        if self.reg_weight:
            loss = loss + self.reg_weight * norm_regulariser((u, pos, neg), user.shape[0], self.reg_norm)
        return loss
