"""Sparse item-item kNN graphs shared by MICRO and LATTICE.

Every graph here has N·k non-zeros and is stored as a ``torch.sparse_coo_tensor``; no function holds
a dense N × N matrix: similarities are computed ``chunk_size`` rows at a time
(memory O(chunk_size · N + N · k)).

Formulas (Zhang et al., LATTICE §3.1 / MICRO §3.2, and ``../shared/design/micro.md`` §1–2):

* cosine similarity  S_ij = x_i·x_j / (‖x_i‖ ‖x_j‖)   (a zero row has similarity 0 with everything);
* kNN sparsification  keep the k largest S_ij of each row i (the item itself included: S_ii = 1);
* normalisation       sym: S̃ = D^-1/2 S D^-1/2,  rw: S̃ = D^-1 S,  with D = diag(row sums of the kept
  values); a degree ≤ 0 gets weight 0 (the reference's ``inf → 0``, extended to negative sums);
* λ-mix               A = (1 − λ)·Â_learned + λ·S̃_original.
"""

import threading
import warnings
import weakref
from collections import OrderedDict

import torch
import torch.nn.functional as F

NORM_TYPES = ("sym", "rw", "none")


def cosine_topk(features, k, chunk_size=1024, exclude_self=False):
    r"""Indices of the ``k`` most cosine-similar rows of ``features`` for every row (no gradient).

    Returns a LongTensor ``(N, k)``; neighbours are sorted by decreasing similarity. Row blocks of
    ``chunk_size`` keep peak memory at ``chunk_size × N`` similarities.
    """
    with torch.no_grad():
        x = F.normalize(features.detach(), p=2, dim=1)
        n = x.shape[0]
        out = torch.empty(n, k, dtype=torch.long, device=x.device)
        for start in range(0, n, chunk_size):
            sim = x[start : start + chunk_size] @ x.t()
            if exclude_self:
                rows = torch.arange(sim.shape[0], device=x.device)
                sim[rows, rows + start] = -float("inf")
            out[start : start + chunk_size] = sim.topk(k, dim=1).indices
    return out


def cosine_values(features, index, chunk_size=1024):
    r"""Cosine similarity ``S_{i, index[i, j]}`` recomputed (with gradient if enabled), shape ``(N, k)``.

    Only the kept edges are evaluated, so gradients flow into ``features`` exactly as through the
    reference's dense ``topk`` values. Rows go ``chunk_size`` at a time: the gathered neighbour block
    is chunk × k × d (a whole N × k × d gather of 4,096-d features would outgrow a dense N × N).
    """
    x = F.normalize(features, p=2, dim=1)
    return torch.cat(
        [
            torch.einsum("nd,nkd->nk", x[start : start + chunk_size], x[index[start : start + chunk_size]])
            for start in range(0, x.shape[0], chunk_size)
        ]
    )


def normalize_edges(rows, cols, values, num_nodes, norm_type="sym"):
    r"""Normalise edge weights by the row sums d_i of ``values``: ``sym`` d_i^-1/2 v d_j^-1/2, ``rw`` v / d_i."""
    if norm_type == "none":
        return values
    degree = torch.zeros(num_nodes, dtype=values.dtype, device=values.device)
    degree = degree.scatter_add(0, rows, values)
    positive = degree > 0
    safe = torch.where(positive, degree, torch.ones_like(degree))
    if norm_type == "sym":
        inv = torch.where(positive, safe.pow(-0.5), torch.zeros_like(degree))
        return inv[rows] * values * inv[cols]
    if norm_type == "rw":
        inv = torch.where(positive, safe.reciprocal(), torch.zeros_like(degree))
        return inv[rows] * values
    raise ValueError(f"norm_type must be one of {NORM_TYPES}, got {norm_type!r}")


def knn_edges(features, k, chunk_size=1024, with_grad=False):
    r"""The (unnormalised) kNN graph of ``features`` as ``(rows, cols, values)`` of length N·k."""
    index = cosine_topk(features, k, chunk_size)
    n = features.shape[0]
    rows = torch.arange(n, device=features.device).repeat_interleave(k)
    with torch.set_grad_enabled(with_grad and torch.is_grad_enabled()):
        values = cosine_values(features, index, chunk_size)
    return rows, index.reshape(-1), values.reshape(-1)


def to_sparse(rows, cols, values, num_nodes):
    """An N × N sparse COO tensor (duplicates summed)."""
    index = torch.stack([rows, cols])
    return torch.sparse_coo_tensor(index, values, (num_nodes, num_nodes), check_invariants=False).coalesce()


def knn_graph(features, k, norm_type="sym", chunk_size=1024, with_grad=False):
    r"""Normalised kNN graph S̃ of ``features`` (N × N sparse, N·k non-zeros)."""
    n = features.shape[0]
    rows, cols, values = knn_edges(features, k, chunk_size, with_grad)
    return to_sparse(rows, cols, normalize_edges(rows, cols, values, n, norm_type), n)


def mix_graphs(learned, original, lambda_coeff):
    r"""A = (1 − λ)·learned + λ·original (λ weights the ORIGINAL graph, as in the reference)."""
    return ((1.0 - lambda_coeff) * learned + lambda_coeff * original).coalesce()


def propagate(adj, x, n_layers):
    r"""H = A^L X (item-graph convolution, no nonlinearity; MICRO Eq. 6)."""
    for _ in range(n_layers):
        x = sparse_mm(adj, x)
    return x


def sparse_mm(adj, x, chunk_size=1 << 16):
    r"""A X for a sparse COO A, in O(N·k + N·d) memory also when A's values need a gradient.

    The products run on CSR copies of A and of Aᵀ (MKL / cuSPARSE; on this project's CPU ≈ 3× faster than
    ``torch.sparse.mm`` on COO), made once per graph and reused (``transposed_csr``): autograd's own
    backward of ``torch.sparse.mm`` multiplies by ``A.t()``, an uncoalesced COO tensor that is coalesced
    again at every step (with host synchronisations on CUDA).
    ``torch.sparse.mm``'s backward also builds the gradient of A as a DENSE N × N matrix (1.6 GB at 20k
    items); here ∂L/∂A_ij = ⟨∂L/∂Y_i, X_j⟩ is evaluated on the stored edges only, ``chunk_size`` edges at a time.
    """
    adj = adj if adj.is_coalesced() else adj.coalesce()
    if not adj.requires_grad:
        return _CachedSparseMM.apply(adj, x)
    return _EdgeSparseMM.apply(adj.indices(), adj.values(), x, chunk_size)


_CSR_CACHE = OrderedDict()  # key of a graph -> [weak reference to the graph, its CSR, its transpose's CSR or None]
_CSR_CACHE_SIZE = 8
_CSR_LOCK = threading.RLock()  # re-entrant: a graph's death (its weak reference's callback) may come while held


def _graph_key(adj):
    values, indices = adj.values(), adj.indices()
    return (values.data_ptr(), indices.data_ptr(), values._version, adj._nnz(), tuple(adj.shape), str(adj.device))


def _csr_entry(adj):
    r"""The cache entry of a coalesced, gradient-free COO graph (built on first use, least recently used
    evicted). The entry lives as long as the graph object it was built for: when that graph is freed (a model
    of an earlier tuning trial, say) its CSR copies go with it, and its key (storage addresses, version, size)
    can never match a later tensor that reuses the memory. ``detach()`` copies share the entry."""
    key = _graph_key(adj)
    with _CSR_LOCK:
        entry = _CSR_CACHE.get(key)
        if entry is not None:
            _CSR_CACHE.move_to_end(key)
            return entry
    entry = [None, to_csr(adj.detach()), None]

    def forget(_, key=key, entry=entry):
        with _CSR_LOCK:
            if _CSR_CACHE.get(key) is entry:
                del _CSR_CACHE[key]

    entry[0] = weakref.ref(adj, forget)
    with _CSR_LOCK:
        _CSR_CACHE[key] = entry
        while len(_CSR_CACHE) > _CSR_CACHE_SIZE:
            _CSR_CACHE.popitem(last=False)
    return entry


def to_csr(coo):
    """A coalesced COO tensor as CSR with 32-bit indices where they fit (MKL's index type: no conversion per
    product). torch's one-time "CSR support is in beta" notice is not the user's to fix."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = coo.to_sparse_csr()
        if max(csr.shape[0], csr.shape[1], csr._nnz()) < 2**31 - 1:
            csr = torch.sparse_csr_tensor(csr.crow_indices().to(torch.int32), csr.col_indices().to(torch.int32),
                                          csr.values(), csr.shape, check_invariants=False)
        return csr


def transpose_csr(indices, values, shape):
    r"""Aᵀ as CSR from the coalesced COO ``indices``/``values`` of an A of ``shape``: one stable sort of the
    edges by (column, row), no coalescing and no host synchronisation."""
    rows, cols = indices[0], indices[1]
    order = torch.argsort(cols * shape[0] + rows, stable=True)
    flipped = torch.stack([cols[order], rows[order]])
    coo = torch.sparse_coo_tensor(flipped, values[order], (shape[1], shape[0]), is_coalesced=True,
                                  check_invariants=False)
    return to_csr(coo)


def transposed_csr(adj):
    r"""Aᵀ of a gradient-free COO graph as CSR, computed once per graph (cached with A's CSR)."""
    graph = adj if adj.is_coalesced() else adj.coalesce()
    entry = _csr_entry(graph)
    if entry[2] is None:
        entry[2] = transpose_csr(graph.indices(), graph.values(), tuple(graph.shape))
    return entry[2]


class _CachedSparseMM(torch.autograd.Function):
    r"""Y = A X for a fixed graph A: forward with A's CSR, backward ∂L/∂X = Aᵀ ∂L/∂Y with the cached CSR of Aᵀ."""

    @staticmethod
    def forward(ctx, adj, x):
        ctx.adj = adj
        return torch.sparse.mm(_csr_entry(adj)[1], x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        grad_x = torch.sparse.mm(transposed_csr(ctx.adj), grad_y) if ctx.needs_input_grad[1] else None
        return None, grad_x


class _EdgeSparseMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, indices, values, x, chunk_size):
        n = x.shape[0]
        ctx.save_for_backward(indices, values, x)
        ctx.chunk_size = chunk_size
        coo = torch.sparse_coo_tensor(indices, values, (n, n), is_coalesced=True, check_invariants=False)
        return torch.sparse.mm(to_csr(coo), x)

    @staticmethod
    def backward(ctx, grad_y):
        indices, values, x = ctx.saved_tensors
        grad_values = grad_x = None
        if ctx.needs_input_grad[1]:
            rows, cols, step = indices[0], indices[1], ctx.chunk_size
            grad_values = torch.cat([
                (grad_y[rows[s : s + step]] * x[cols[s : s + step]]).sum(1) for s in range(0, rows.numel(), step)
            ]) if rows.numel() else values.new_zeros(0)
        if ctx.needs_input_grad[2]:
            grad_x = torch.sparse.mm(transpose_csr(indices, values.detach(), (x.shape[0], x.shape[0])), grad_y)
        return None, grad_values, grad_x, None


def pad_graph(adj, offset=1):
    r"""Embed an (N−offset)² graph into N × N by shifting ids by ``offset``.

    RecBole reserves item id 0 for ``[PAD]``: graphs are built over the real items 1..N−1 only, so the
    padding item is never anyone's neighbour and has no edges itself.
    """
    adj = adj.coalesce()
    n = adj.shape[0] + offset
    return torch.sparse_coo_tensor(adj.indices() + offset, adj.values(), (n, n), check_invariants=False).coalesce()


def summed_knn_graph(features_list, weights, k, norm_type="sym", chunk_size=1024, with_grad=False):
    r"""LATTICE's learned graph: normalise(Σ_m w_m kNN(F_m)), normalised ONCE after the sum.

    Each kNN(F_m) is the UNnormalised kNN graph of one modality (N·k edges, values = cosine); the
    weighted edge lists are concatenated and normalised together: the degree d_i is the row sum of the
    summed graph (``scatter_add`` adds duplicate edges), and since sym/rw normalisation is linear in
    each edge value, normalising duplicate edges one by one and summing them (``to_sparse`` coalesces)
    equals normalising the summed edge. Gradient flows into the features (``with_grad``) and into
    ``weights`` (a tensor, or a list of numbers). At most M·N·k non-zeros.
    """
    n = features_list[0].shape[0]
    parts = [knn_edges(x, k, chunk_size, with_grad) for x in features_list]
    rows = torch.cat([r for r, _, _ in parts])
    cols = torch.cat([c for _, c, _ in parts])
    values = torch.cat([weights[m] * v for m, (_, _, v) in enumerate(parts)])
    return to_sparse(rows, cols, normalize_edges(rows, cols, values, n, norm_type), n)


def weighted_sum(adjs, weights):
    r"""Σ_m w_m A_m of sparse N × N graphs (LATTICE's original graph Σ_m α_m S̃_m); gradient flows into
    ``weights`` when it is a tensor."""
    adjs = [a.coalesce() for a in adjs]
    n = adjs[0].shape[0]
    index = torch.cat([a.indices() for a in adjs], dim=1)
    values = torch.cat([weights[m] * a.values() for m, a in enumerate(adjs)])
    return torch.sparse_coo_tensor(index, values, (n, n), check_invariants=False).coalesce()


# ------------------------------------------------------------------ FREEDOM and LGMRec
def binary_knn_graph(features, k, norm_type="sym", chunk_size=1024):
    r"""FREEDOM's frozen modality graph (Zhou & Shen 2023, §3): the UNWEIGHTED kNN graph of
    ``features`` (Ŝ_ij = 1 for the k most cosine-similar j of row i, the item itself included), then
    normalised, e.g. ``sym`` D^-1/2 Ŝ D^-1/2 with D the row sums (= k: every edge gets 1/k, as the
    authors' code computes it). N × N sparse, N·k non-zeros, no gradient."""
    index = cosine_topk(features, k, chunk_size)
    n = features.shape[0]
    rows = torch.arange(n, device=features.device).repeat_interleave(k)
    cols = index.reshape(-1)
    ones = torch.ones(rows.numel(), dtype=features.dtype, device=features.device)
    return to_sparse(rows, cols, normalize_edges(rows, cols, ones, n, norm_type), n)


def bipartite_graph(users, items, n_users, n_items, norm_type="sym", dtype=torch.float32):
    r"""The (U+N) × (U+N) user–item graph [[0, R], [Rᵀ, 0]] of the interactions (``users[k]``, ``items[k]``),
    each edge weight 1 then normalised: ``sym`` gives 1/√(d_u d_i) on both directions of every edge, with the
    degrees d counted in THESE interactions (LightGCN's Â; FREEDOM's pruned graph)."""
    n = n_users + n_items
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    ones = torch.ones(rows.numel(), dtype=dtype, device=users.device)
    return to_sparse(rows, cols, normalize_edges(rows, cols, ones, n, norm_type), n)


def degree_edge_weights(users, items, n_users, n_items):
    r"""p_k = 1/√(d_u d_i) of every interaction k (FREEDOM's degree-sensitive edge weights)."""
    n = n_users + n_items
    rows = torch.cat([users, items + n_users])
    cols = torch.cat([items + n_users, users])
    ones = torch.ones(rows.numel(), device=users.device)
    return normalize_edges(rows, cols, ones, n, "sym")[: users.numel()]


def sample_edges(weights, n_keep, replacement=False, generator=None):
    r"""Indices of the edges kept by FREEDOM's degree-sensitive pruning, sorted.

    ``replacement=False`` (the authors' code, ``torch.multinomial`` without replacement): ``n_keep`` distinct
    edges drawn one after another, each with probability ∝ ``weights`` among those not yet drawn.
    ``replacement=True`` (the paper's "multinomial distribution with n trials"): ``n_keep`` independent
    draws ∝ ``weights``; an edge drawn more than once is kept once, so fewer than ``n_keep`` may remain.
    """
    if n_keep <= 0:
        return torch.zeros(0, dtype=torch.long, device=weights.device)
    if not replacement and n_keep >= weights.numel():
        return torch.arange(weights.numel(), device=weights.device)
    drawn = torch.multinomial(weights, n_keep, replacement=replacement, generator=generator)
    return torch.unique(drawn)


def rectangular(rows, cols, values, shape):
    """A coalesced ``shape[0] × shape[1]`` sparse COO matrix (duplicates summed), for ``sparse_mm``."""
    index = torch.stack([rows, cols])
    return torch.sparse_coo_tensor(index, values, shape, check_invariants=False).coalesce()


def hypergraph_propagate(item_hyper, user_hyper, x, n_layers):
    r"""LGMRec's hypergraph message passing (Guo et al. 2024, global hypergraph embedding), dense N × A
    and U × A dependency matrices (A hyperedges, a handful):

    E_i^{h+1} = H_i (H_iᵀ E_i^h),   E_u^{h+1} = H_u (H_iᵀ E_i^h);  returns (E_u^{L}, E_i^{L}), L ≥ 1.
    """
    users = None
    for _ in range(n_layers):
        hyperedges = item_hyper.t() @ x  # A × d: the hyperedge embeddings
        x = item_hyper @ hyperedges
        users = user_hyper @ hyperedges
    return users, x


def mean_propagate(adj, x, n_layers):
    r"""LightGCN's readout (He et al. 2020, Eq. 8 with α_l = 1/(L+1)): mean(X, ÂX, …, Â^L X)."""
    layers = [x]
    for _ in range(n_layers):
        layers.append(sparse_mm(adj, layers[-1]))
    return torch.stack(layers, dim=1).mean(dim=1)
