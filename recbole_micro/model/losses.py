"""Loss terms of MICRO (``../shared/design/micro.md`` §7).

The contrastive fusion loss is the expensive term: it compares every item with every other one.
``contrastive_loss`` computes it exactly with a custom autograd function (``InfoNCE``) that never holds
more than (threads ×) ``block × 2M`` similarities (M = number of negatives: all N items by default) and
keeps only O(N·d) tensors between forward and backward; ``contrastive_loss_autograd`` is the
plain-autograd form (≈ 4.5·N² floats held for backward), kept as the reference the fast one is tested
against. Neither forward nor backward reads a value back to the host (no ``.item()``, ``.tolist()``,
``nonzero``): on a GPU the whole loss is queued without a synchronisation.
"""

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import torch
import torch.nn.functional as F

CONTRASTIVE_MODES = ("full", "sampled")
CONTRASTIVE_PRECISIONS = ("fp32", "bf16")


def bpr_loss(user, pos, neg):
    r"""L_BPR = −mean log σ(⟨u, i⁺⟩ − ⟨u, i⁻⟩)  (Rendle et al. 2009)."""
    return -F.logsigmoid((user * pos).sum(-1) - (user * neg).sum(-1)).mean()


def embedding_loss(reg_weight, *embeddings):
    r"""L_emb = reg_weight · ½ Σ ‖e‖² / batch_size, on the OUTPUT embeddings of the batch (reference)."""
    batch_size = embeddings[0].shape[0]
    return reg_weight * 0.5 * sum(e.pow(2).sum() for e in embeddings) / batch_size


REG_NORMS = ("frobenius", "squared")


def norm_regulariser(embeddings, denominator, reg_norm="frobenius"):
    r"""R = Σ_e ‖e‖_F / n (``frobenius``: MMRec's ``EmbLoss``, un-squared norms, as the VBPR and BM3 code use
    it) or Σ_e ‖e‖²_F / n (``squared``: the papers' λ‖Θ‖² form); n = ``denominator``."""
    if reg_norm not in REG_NORMS:
        raise ValueError(f"reg_norm must be one of {REG_NORMS}, got {reg_norm!r}")
    if reg_norm == "squared":
        return sum(e.pow(2).sum() for e in embeddings) / denominator
    return sum(torch.linalg.norm(e) for e in embeddings) / denominator


def contrastive_loss(z1, z2, temperature=0.5, chunk_size=4096, negatives=None, population=None, precision="fp32"):
    r"""GRACE-style InfoNCE of MICRO (Eq. 11–12): one direction, cosine similarity c, temperature τ.

    ℓ_i = −log( e^{c(z1_i, z2_i)/τ} / (Σ_{j≠i} e^{c(z1_i, z1_j)/τ} + Σ_j e^{c(z1_i, z2_j)/τ}) ),
    averaged over all N rows — exactly (the reference loss), at most ``chunk_size`` anchor rows at a time.

    ``negatives`` (LongTensor of distinct row ids, see ``sample_negatives``) restricts the two sums to those
    rows, re-weighted by (N − 1)/|S∖{i}| so that they estimate the full sums; the positive always
    stays in the denominator. ``None`` (the default) uses every row, which is the full loss.
    ``population`` (default N): when z1, z2 are themselves a uniform sample of M rows out of a larger
    population, the sums over the M − 1 other rows are re-weighted by (population − 1)/(M − 1), the
    estimate of the population's sums (the bounded ``sampled`` mode of MICRO).
    ``precision``: ``fp32`` (default) or ``bf16`` — the similarity blocks and their three matrix products in
    bfloat16, every sum (denominators, gradient accumulation over blocks) in float32.
    The normalisation is done here, by autograd; ``InfoNCE`` differentiates the rest analytically.
    """
    if precision not in CONTRASTIVE_PRECISIONS:
        raise ValueError(f"precision must be one of {CONTRASTIVE_PRECISIONS}, got {precision!r}")
    z1 = F.normalize(z1, p=2, dim=1)
    z2 = F.normalize(z2, p=2, dim=1)
    return InfoNCE.apply(z1, z2, negatives, float(temperature), int(chunk_size), population or z1.shape[0], precision)


def sample_negatives(n, samples, device=None, generator=None):
    r"""``samples`` distinct row ids drawn uniformly from ``range(n)`` (all rows, in order, if ``samples >= n``)."""
    if samples >= n:
        return torch.arange(n, device=device)
    return torch.randperm(n, device=device, generator=generator)[:samples]


# Similarities per block on the CPU, per thread (16 MB). Measured on Baby (N = 7,050, 2 cores): blocks of
# 128–512 anchor rows (1.8–7.2 M similarities) are within 10 % of each other; smaller ones slow the
# products (K = 64 inner dimension), larger ones leave the caches. On a GPU the block is chunk_size rows.
BLOCK_ELEMENTS = 1 << 22
MIN_BLOCK_ROWS = 64  # fewer anchor rows make the key-gradient product memory-bound
# CPU: deal the blocks to one single-threaded worker per intra-op thread (``run_blocks``); False runs them in
# order with torch's own intra-op threads (kept for the benchmarks' comparison).
SPLIT_THREADS = True


def block_rows(chunk_size, n_keys):
    r"""Anchor rows per CPU block: at most ``chunk_size`` (the memory bound chunk × 2M), fewer when a block
    of ``BLOCK_ELEMENTS`` similarities suffices, at least ``MIN_BLOCK_ROWS``."""
    return max(1, min(chunk_size, max(MIN_BLOCK_ROWS, BLOCK_ELEMENTS // max(1, n_keys))))


def row_blocks(n, rows, threads):
    r"""``(start, end)`` anchor blocks covering ``range(n)``: equal sizes of at most ``rows``, their number a
    multiple of ``threads`` when there is enough work, so that every thread gets the same share."""
    count = -(-n // max(1, rows))
    if count >= 1 and threads > 1:
        count = threads * -(-count // threads) if n >= threads * MIN_BLOCK_ROWS else count
    size = -(-n // max(1, count))
    return [(start, min(start + size, n)) for start in range(0, n, size)]


_POOL = {"pool": None, "size": 0, "pid": None}
_POOL_LOCK = threading.Lock()


def _worker_pool(size):
    """A process-wide pool of ``size`` helper threads (recreated after a fork or a change of size)."""
    with _POOL_LOCK:
        if _POOL["pool"] is None or _POOL["size"] != size or _POOL["pid"] != os.getpid():
            _POOL.update(pool=ThreadPoolExecutor(size, thread_name_prefix="infonce"), size=size, pid=os.getpid())
        return _POOL["pool"]


def run_blocks(blocks, body, device, threads=None):
    r"""Call ``body(block, slot)`` for every block.

    On the CPU with T > 1 intra-op threads the blocks are dealt round-robin to T Python threads, each running
    its ops single-threaded on its own blocks (``slot`` = its index, for its own buffers): no parallel region
    per op, so no thread waits for another between ops (with shared cores a waiting region costs a time
    slice), and each block stays in its thread's caches. The split is static, so every run adds the same
    numbers in the same order (results are bitwise reproducible for a given thread count). Elsewhere the
    blocks run in order in the calling thread (``slot`` 0)."""
    threads = torch.get_num_threads() if threads is None else threads
    threads = min(threads, len(blocks)) if device.type == "cpu" else 1
    if threads <= 1:
        for block in blocks:
            body(block, 0)
        return 1
    saved = torch.get_num_threads()

    def share(slot):
        torch.set_num_threads(1)  # this thread's intra-op threads (per-thread OpenMP/MKL setting)
        with torch.no_grad():
            for block in blocks[slot::threads]:
                body(block, slot)

    futures = [_worker_pool(threads - 1).submit(share, slot) for slot in range(1, threads)]
    try:
        share(0)
    finally:
        wait(futures)
        torch.set_num_threads(saved)
    for future in futures:
        future.result()  # re-raise a helper's error
    return threads


_OUT_DTYPE = {"cuda": True}  # does torch.mm(..., out_dtype=) work on this device type (found on first use)


_SCRATCH = {}  # (calling thread, slot, device, dtype) -> flat buffer, reused by the next call (CPU only)


def scratch(slot, rows, cols, dtype, device):
    r"""A ``rows × cols`` block buffer for worker ``slot`` of the calling thread. On the CPU it is kept for the
    next call: a fresh multi-MB allocation is new memory pages, and first-touching them costs as much as
    the block's matrix product (measured: 1024 × 2048 products at half speed). GPUs have their own caching
    allocator."""
    if device.type != "cpu":
        return torch.empty(rows, cols, dtype=dtype, device=device)
    key = (threading.get_ident(), slot, str(device), dtype)
    buffer = _SCRATCH.get(key)
    if buffer is None or buffer.numel() < rows * cols:
        buffer = _SCRATCH[key] = torch.empty(rows * cols, dtype=dtype, device=device)
    return buffer[: rows * cols].view(rows, cols)


def _mm(a, b, dtype):
    r"""a·b with the result in ``dtype``: float32 accumulation AND output on CUDA (``out_dtype``, where this torch
    has it), else the product in the inputs' type, then converted."""
    if a.dtype == dtype:
        return a @ b
    if _OUT_DTYPE.get(a.device.type, False):
        try:
            return torch.mm(a, b, out_dtype=dtype)
        except (RuntimeError, TypeError, NotImplementedError):
            _OUT_DTYPE[a.device.type] = False
    return (a @ b).to(dtype)


class InfoNCE(torch.autograd.Function):
    r"""The contrastive loss on L2-normalised rows, with its analytic gradient, in anchor blocks.

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

    Per block C of anchors, with B = [z1_S; z2_S] (2M × d) and E = exp(A_C Bᵀ / τ) masked to 0 where
    S_j = i, w = (r/D) ⊙ E: the anchor term is (r/D) ⊙ (E B) and the negative term Eᵀ ((r/D) ⊙ A_C) —
    three matrix products per block (the row scaling r/D commutes with them, so E is never rescaled).
    Every row i's D_i is complete inside its own block, so the gradient is accumulated in the same
    pass as the loss (no recomputation: 3 products per block instead of 4) and only the two N × d
    gradients are kept for ``backward``, which scales them by the incoming gradient. Peak memory is
    one block × 2M per thread; when no input needs a gradient only the first product is done.

    Why not the symmetry of e^{s¹} (it would save the first product's z1·z1ᵀ half): the key term of a
    tile (i, j) needs D_j, complete only once row j's block is done, so a one-pass symmetric scheme must
    either store the N² exponentials or recompute them (7 N²d multiply-adds instead of 6).
    """

    @staticmethod
    def forward(ctx, z1, z2, negatives, temperature, chunk_size, population, precision="fp32"):
        n, device = z1.shape[0], z1.device
        every = negatives is None
        m = n if every else negatives.shape[0]
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        low = torch.bfloat16 if precision == "bf16" else z1.dtype
        keys = torch.cat([z1, z2]) if every else torch.cat([z1.index_select(0, negatives), z2.index_select(0, negatives)])
        if every:  # r = (P − 1)/(N − 1) for every row: a number, no tensor
            ratio_all = (population - 1) / max(1, n - 1)
            owner = None
        else:  # r_i per row; key column j (and M + j) belongs to row negatives[j], masked in that row only
            in_sample = torch.zeros(n, dtype=z1.dtype, device=device).index_fill_(0, negatives, 1.0)
            ratio_all = (population - 1) / (m - in_sample).clamp_min(1.0)
            owner = torch.cat([negatives, negatives])
        inv_tau = 1.0 / temperature
        anchors = (z1 * inv_tau).to(low)  # s = (a_i / τ)·b_j
        keys_low = keys.to(low)
        positive = (z1 * z2).sum(1) * inv_tau  # p_i
        pos_exp = positive.exp()
        cpu = device.type == "cpu"
        step = block_rows(chunk_size, 2 * m) if cpu else max(1, chunk_size)
        threads = min(torch.get_num_threads(), -(-n // step)) if cpu and SPLIT_THREADS else 1
        blocks = row_blocks(n, step, threads)
        threads = min(threads, len(blocks))
        rows_max = max(end - start for start, end in blocks)
        buffers = [scratch(slot, rows_max, 2 * m, low, device) for slot in range(threads)]
        sums = torch.empty(n, dtype=z1.dtype, device=device)  # Σ over the kept negatives (float32)
        if need_grad:
            grad_anchor = torch.empty_like(z1)
            grad_keys = [torch.zeros_like(keys) for _ in range(threads)]
            z1_low = z1.to(low)
        row_ids = None if every else torch.arange(n, device=device)

        def block(bounds, slot):
            start, end = bounds
            sim = buffers[slot][: end - start]
            torch.mm(anchors[start:end], keys_low.t(), out=sim)  # s¹ | s² of the block, c × 2M
            sim.exp_()
            if every:  # j ≠ i in both halves (strided diagonals); the positive is added apart
                sim[:, start:end].diagonal().zero_()
                sim[:, m + start : m + end].diagonal().zero_()
            else:
                sim.masked_fill_(owner[None, :] == row_ids[start:end, None], 0.0)
            torch.sum(sim, 1, dtype=sums.dtype, out=sums[start:end])
            if need_grad:
                ratio = ratio_all if every else ratio_all[start:end]
                scale = ratio / (pos_exp[start:end] + ratio * sums[start:end])  # r_i / D_i
                if low == z1.dtype:
                    torch.mm(sim, keys_low, out=grad_anchor[start:end])  # row-scaled after the loop
                    grad_keys[slot].addmm_(sim.t(), z1_low[start:end] * scale[:, None])
                else:
                    grad_anchor[start:end] = _mm(sim, keys_low, z1.dtype)
                    grad_keys[slot] += _mm(sim.t(), (z1[start:end] * scale[:, None]).to(low), z1.dtype)

        run_blocks(blocks, block, device, threads)
        denominator = pos_exp + ratio_all * sums  # D_i
        losses = denominator.log() - positive
        if need_grad:
            for extra in grad_keys[1:]:  # in slot order: the same sum every run
                grad_keys[0] += extra
            factor = inv_tau / n
            grad_positive = (pos_exp / denominator - 1.0)[:, None]  # π_i − 1
            grad_anchor.mul_((ratio_all / denominator)[:, None]).addcmul_(grad_positive, z2)
            grad_z2 = z1 * grad_positive
            if every:
                grad_z1 = grad_anchor.add_(grad_keys[0][:m]).mul_(factor)
                grad_z2 = grad_z2.add_(grad_keys[0][m:]).mul_(factor)
            else:
                grad_z1 = grad_anchor.index_add_(0, negatives, grad_keys[0][:m]).mul_(factor)
                grad_z2 = grad_z2.index_add_(0, negatives, grad_keys[0][m:]).mul_(factor)
            ctx.save_for_backward(grad_z1, grad_z2)
        return losses.mean()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad_z1, grad_z2 = ctx.saved_tensors
        return grad_output * grad_z1, grad_output * grad_z2, None, None, None, None, None


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


class LogSumExpScores(torch.autograd.Function):
    r"""log Σ_j e^{⟨a_b, z_j⟩} for every row a_b, the exp / log form of LGMRec's contrastive denominator, with the
    B × N scores held once: exponentiated in place in the forward pass, turned into the gradient weights
    e^{s_bj} g_b / Σ_j e^{s_bj} in place in the backward pass (d log Σ e^s / ds = softmax(s)). Plain autograd
    keeps a second B × N tensor per pass; the arithmetic is the same: the value equals it to the bit, the gradients
    within float32 rounding (to the bit where the CPU's matrix kernels sum in the same order; tested). A second
    backward over a retained graph recomputes the scores."""

    @staticmethod
    def forward(ctx, a, z):
        scores = (a @ z.t()).exp_()
        total = scores.sum(1)
        ctx.save_for_backward(a, z)
        ctx.exp_scores, ctx.total = scores, total
        return total.log()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        a, z = ctx.saved_tensors
        scores, ctx.exp_scores = ctx.exp_scores, None  # released here: the weights overwrite it
        if scores is None:  # backward again over a retained graph
            scores = (a @ z.t()).exp_()
        weights = scores.mul_((grad_output / ctx.total).unsqueeze(1))
        grad_a = weights @ z if ctx.needs_input_grad[0] else None
        grad_z = (a.t() @ weights).t() if ctx.needs_input_grad[1] else None  # autograd's own form; faster than W.t() @ a
        return grad_a, grad_z


def candidate_infonce(anchor, positive, candidates, temperature):
    r"""InfoNCE against a candidate set, SUMMED over the anchors (LGMRec's hypergraph contrastive term):

    Σ_b −log( e^{c(a_b, p_b)/τ} / Σ_j e^{c(a_b, z_j)/τ} ),  c the cosine, z_j every row of ``candidates``
    (which holds the positives themselves, so the positive is also in the denominator). The denominator is
    the authors' exp / log form, log Σ_j e^{s_j} (``LogSumExpScores``), whenever it cannot overflow
    (|s_j| ≤ 1/τ for cosines, so |candidates|·e^{1/τ} must fit the dtype); otherwise (tiny τ) logsumexp, the
    same value. Memory B × |candidates|. ``benchmarks/infonce_speed.py`` times it against plain autograd.
    """
    a = F.normalize(anchor, p=2, dim=1)
    p = F.normalize(positive, p=2, dim=1)
    z = F.normalize(candidates, p=2, dim=1)
    a = a / temperature  # scaled before the B × |candidates| product, not after it
    if 1.0 / temperature + math.log(max(z.shape[0], 1)) < math.log(torch.finfo(a.dtype).max) - 1.0:
        denominator = LogSumExpScores.apply(a, z)
    else:
        denominator = torch.logsumexp(a @ z.t(), dim=1)
    return (denominator - (a * p).sum(1)).sum()
