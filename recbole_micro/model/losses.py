"""Loss terms of MICRO (``../shared/design/micro.md`` §7)."""

import torch
import torch.nn.functional as F


def bpr_loss(user, pos, neg):
    r"""L_BPR = −mean log σ(⟨u, i⁺⟩ − ⟨u, i⁻⟩)  (Rendle et al. 2009)."""
    return -F.logsigmoid((user * pos).sum(-1) - (user * neg).sum(-1)).mean()


def embedding_loss(reg_weight, *embeddings):
    r"""L_emb = reg_weight · ½ Σ ‖e‖² / batch_size, on the OUTPUT embeddings of the batch (reference)."""
    batch_size = embeddings[0].shape[0]
    return reg_weight * 0.5 * sum(e.pow(2).sum() for e in embeddings) / batch_size


def contrastive_loss(z1, z2, temperature=0.5, chunk_size=4096):
    r"""GRACE-style InfoNCE of MICRO (Eq. 11–12): one direction, cosine similarity c, temperature τ.

    ℓ_i = −log( e^{c(z1_i, z2_i)/τ} / (Σ_{j≠i} e^{c(z1_i, z1_j)/τ} + Σ_j e^{c(z1_i, z2_j)/τ}) ),
    averaged over all rows; computed ``chunk_size`` anchor rows at a time (as the reference).
    """
    z1 = F.normalize(z1, p=2, dim=1)
    z2 = F.normalize(z2, p=2, dim=1)
    losses = []
    for start in range(0, z1.shape[0], chunk_size):
        anchor = z1[start : start + chunk_size]
        rows = torch.arange(anchor.shape[0], device=z1.device)
        refl = torch.exp(anchor @ z1.t() / temperature)
        between = torch.exp(anchor @ z2.t() / temperature)
        positive = between[rows, rows + start]
        denominator = refl.sum(1) + between.sum(1) - refl[rows, rows + start]
        losses.append(-torch.log(positive / denominator))
    return torch.cat(losses).mean()
