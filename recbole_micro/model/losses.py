"""Loss terms of MICRO (``../shared/design/micro.md`` §7).

The contrastive fusion loss is the expensive term: it compares every item with every other one.
``contrastive_loss`` computes it exactly with a custom autograd function (``InfoNCE``) that never holds
more than ``chunk_size × 2M`` similarities (M = number of negatives: all N items by default) and keeps
only O(N·d) tensors between forward and backward; ``contrastive_loss_autograd`` is the plain-autograd
form (≈ 4.5·N² floats held for backward), kept as the reference the fast one is tested against.
"""

import torch
import torch.nn.functional as F

CONTRASTIVE_MODES = ("full", "sampled")


def bpr_loss(user, pos, neg):
    r"""L_BPR = −mean log σ(⟨u, i⁺⟩ − ⟨u, i⁻⟩)  (Rendle et al. 2009)."""
    return -F.logsigmoid((user * pos).sum(-1) - (user * neg).sum(-1)).mean()


def embedding_loss(reg_weight, *embeddings):
    r"""L_emb = reg_weight · ½ Σ ‖e‖² / batch_size, on the OUTPUT embeddings of the batch (reference)."""
    batch_size = embeddings[0].shape[0]
    return reg_weight * 0.5 * sum(e.pow(2).sum() for e in embeddings) / batch_size


def contrastive_loss(z1, z2, temperature=0.5, chunk_size=4096, negatives=None, population=None):
    r"""GRACE-style InfoNCE of MICRO (Eq. 11–12): one direction, cosine similarity c, temperature τ.

    ℓ_i = −log( e^{c(z1_i, z2_i)/τ} / (Σ_{j≠i} e^{c(z1_i, z1_j)/τ} + Σ_j e^{c(z1_i, z2_j)/τ}) ),
    averaged over all N rows — exactly (the reference loss), ``chunk_size`` anchor rows at a time.

    ``negatives`` (LongTensor of distinct row ids, see ``sample_negatives``) restricts the two sums to those
    rows, re-weighted by (N − 1)/|S∖{i}| so that they estimate the full sums; the positive always
    stays in the denominator. With every row as negative (``torch.arange(N)``) this IS the full loss.
    ``population`` (default N): when z1, z2 are themselves a uniform sample of M rows out of a larger
    population, the sums over the M − 1 other rows are re-weighted by (population − 1)/(M − 1), the
    estimate of the population's sums (the bounded ``sampled`` mode of MICRO).
    The normalisation is done here, by autograd; ``InfoNCE`` differentiates the rest analytically.
    """
    z1 = F.normalize(z1, p=2, dim=1)
    z2 = F.normalize(z2, p=2, dim=1)
    if negatives is None:
        negatives = torch.arange(z1.shape[0], device=z1.device)
    return InfoNCE.apply(z1, z2, negatives, float(temperature), int(chunk_size), population or z1.shape[0])


def sample_negatives(n, samples, device=None, generator=None):
    r"""``samples`` distinct row ids drawn uniformly from ``range(n)`` (all rows, in order, if ``samples >= n``)."""
    if samples >= n:
        return torch.arange(n, device=device)
    return torch.randperm(n, device=device, generator=generator)[:samples]


# Similarities per block (64 MB). Smaller blocks stay in cache (≈ 1.5× faster on an idle core) but multiply
# the parallel regions, each of which waits for a descheduled thread when the CPUs are shared: measured
# on 2 shared cores, 2^20 was 4× slower than 2^24, and 2^24 within 1.3× of the fewest blocks.
BLOCK_ELEMENTS = 1 << 24
MIN_BLOCK_ROWS = 64  # fewer anchor rows make the key-gradient product memory-bound


def block_rows(chunk_size, n_keys):
    r"""Anchor rows per block: at most ``chunk_size`` (the memory bound chunk × 2M), fewer when a block
    of ``BLOCK_ELEMENTS`` similarities suffices, at least ``MIN_BLOCK_ROWS``."""
    return max(1, min(chunk_size, max(MIN_BLOCK_ROWS, BLOCK_ELEMENTS // max(1, n_keys))))


class InfoNCE(torch.autograd.Function):
    r"""The contrastive loss on L2-normalised rows, with its analytic gradient, in anchor chunks.

    Notation: a_i = z1_i (anchor, unit norm), S = negative row ids (M of them; all N by default),
    K_i = S ∖ {i}, r_i = (P − 1)/|K_i| with P the population (= N by default; r_i = 1 when S = all rows), τ the temperature, and

        p_i = a_i·z2_i / τ,   s¹_ij = a_i·z1_j / τ,   s²_ij = a_i·z2_j / τ,
        D_i = e^{p_i} + r_i Σ_{j∈K_i} (e^{s¹_ij} + e^{s²_ij}),
        ℓ_i = log D_i − p_i,   L = (1/N) Σ_i ℓ_i.

    With S = all rows, D_i = Σ_{j≠i} e^{s¹_ij} + Σ_j e^{s²_ij}: the reference denominator (its
    diagonal term e^{s¹_ii} is left out explicitly, not subtracted, so no cancellation).

    Gradient. With the softmax-style weights w^m_ij = r_i e^{s^m_ij} / D_i (j ∈ K_i) and
    π_i = e^{p_i} / D_i:  ∂ℓ_i/∂s^m_ij = w^m_ij,  ∂ℓ_i/∂p_i = π_i − 1,  ∂s/∂a = (the other side)/τ, so

        ∂L/∂z1_i  = 1/(Nτ) [ Σ_j w¹_ij z1_j + Σ_j w²_ij z2_j + (π_i − 1) z2_i ]     (i as anchor)
                  + 1/(Nτ) Σ_i' w¹_i'i a_i'                                          (i as a negative)
        ∂L/∂z2_j  = 1/(Nτ) [ Σ_i w²_ij a_i + (π_j − 1) a_j ]                         (negative, positive)

    Per chunk C of anchors, with B = [z1_S; z2_S] (2M × d) and E = exp(A_C Bᵀ / τ) masked to 0 where
    S_j = i, w = (r/D) ⊙ E: the anchor term is (r/D) ⊙ (E B) and the negative term Eᵀ ((r/D) ⊙ A_C) —
    three matrix products per chunk (the row scaling r/D commutes with them, so E is never rescaled).
    Every row i's D_i is complete inside its own chunk, so the gradient is accumulated in the same
    pass as the loss (no recomputation: 3 products per chunk instead of 4) and only the two N × d
    gradients are kept for ``backward``, which scales them by the incoming gradient. Peak memory is
    one chunk × 2M block; when no input needs a gradient only the first product is done.
    """

    @staticmethod
    def forward(ctx, z1, z2, negatives, temperature, chunk_size, population):
        n, m = z1.shape[0], negatives.shape[0]
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        keys = torch.cat([z1.index_select(0, negatives), z2.index_select(0, negatives)])  # B: 2M × d
        # position of each row in the negative sample (−1: not sampled), to mask j = i
        slot = torch.full((n,), -1, dtype=torch.long, device=z1.device)
        slot[negatives] = torch.arange(m, device=z1.device)
        in_sample = (slot >= 0).to(z1.dtype)
        ratio = (population - 1) / (m - in_sample).clamp_min(1.0)  # r_i
        inv_tau = 1.0 / temperature
        anchors = z1 * inv_tau  # s = (a_i / τ)·b_j
        positive = (z1 * z2).sum(1) * inv_tau  # p_i
        pos_exp = positive.exp()
        step = block_rows(chunk_size, 2 * m)
        starts = list(range(0, n, step))
        # entries to zero (j = i, in both halves of the keys) as flat positions inside each block
        owners = torch.nonzero(slot >= 0).squeeze(1)  # ascending
        local = (owners % step) * (2 * m) + slot[owners]
        masked = torch.stack([local, local + m], 1).reshape(-1)
        bounds = torch.searchsorted(owners, torch.tensor(starts + [n], device=z1.device)).mul_(2).tolist()
        block = torch.empty(min(step, n), 2 * m, dtype=z1.dtype, device=z1.device)
        sums = torch.empty(n, dtype=z1.dtype, device=z1.device)  # Σ over the kept negatives
        if need_grad:
            grad_anchor = torch.empty_like(z1)
            grad_keys = torch.zeros_like(keys)
        for b, start in enumerate(starts):
            end = min(start + step, n)
            sim = block[: end - start]
            torch.mm(anchors[start:end], keys.t(), out=sim)  # s¹ | s² of the block, c × 2M
            sim.exp_()
            sim.view(-1).index_fill_(0, masked[bounds[b] : bounds[b + 1]], 0.0)  # j ≠ i; the positive is added apart
            torch.sum(sim, 1, out=sums[start:end])
            if need_grad:
                scale = ratio[start:end] / (pos_exp[start:end] + ratio[start:end] * sums[start:end])  # r_i / D_i
                torch.mm(sim, keys, out=grad_anchor[start:end])  # row-scaled after the loop
                grad_keys.addmm_(sim.t(), z1[start:end] * scale[:, None])
        denominator = pos_exp + ratio * sums  # D_i
        losses = denominator.log() - positive
        if need_grad:
            factor = inv_tau / n
            grad_positive = (pos_exp / denominator - 1.0)[:, None]  # π_i − 1
            grad_anchor.mul_((ratio / denominator)[:, None]).addcmul_(grad_positive, z2)
            grad_z1 = grad_anchor.index_add_(0, negatives, grad_keys[:m]).mul_(factor)
            grad_z2 = (z1 * grad_positive).index_add_(0, negatives, grad_keys[m:]).mul_(factor)
            ctx.save_for_backward(grad_z1, grad_z2)
        return losses.mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad_z1, grad_z2 = ctx.saved_tensors
        return grad_output * grad_z1, grad_output * grad_z2, None, None, None, None


def contrastive_loss_autograd(z1, z2, temperature=0.5, chunk_size=4096):
    r"""The same full loss in plain autograd, as the reference code computes it (chunks of anchors;
    the autograd graph holds ≈ 4.5·N² floats). Kept to test ``contrastive_loss`` against."""
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
