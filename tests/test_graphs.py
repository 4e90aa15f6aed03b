"""Sparse kNN item graphs (``recbole_micro.model.graphs``) against dense computations written from the
formulas of ``../shared/design/micro.md`` §1–3: chunked top-k, normalisations, λ-mix, propagation,
[PAD] shift, and the values and gradients of the learned graph."""

import pytest
import torch

from dense_reference import dense_cosine, dense_knn, dense_normalise
from recbole_micro.model import graphs

TOL = 1e-6


# ------------------------------------------------------------------------------ dense references
def assert_valid_topk(index, x, k):
    """Tie-robust check of a top-k index (N, k): distinct columns, the sorted kept similarities equal
    the dense top-k values, and every kept similarity is ≥ the row's k-th largest."""
    s = dense_cosine(x)
    ref_values = s.topk(k, dim=1).values
    assert index.shape == (x.shape[0], k)
    assert all(len(set(row.tolist())) == k for row in index), "a neighbour is repeated within a row"
    kept = s.gather(1, index)
    torch.testing.assert_close(kept.sort(1, descending=True).values, ref_values, atol=TOL, rtol=0)
    assert (kept >= ref_values[:, -1:] - TOL).all()


def random_features(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g)


def features_with_ties_and_zeros():
    """Random rows plus exact duplicates (ties of cosine 1) and all-zero rows."""
    x = random_features(40, 6, seed=3)
    x[5] = x[4]  # a pair of duplicates
    x[20] = x[21] = x[22] = x[23] = x[7]  # a group of five identical rows: more ties than k allows
    x[11] = 2.5 * x[10]  # a parallel row: cosine 1 as well
    x[30] = 0.0
    x[31] = 0.0
    return x


# ------------------------------------------------------------------------------------- top-k search
@pytest.mark.parametrize("chunk", [1, 3, 7, 50, 1000])
def test_cosine_topk_equals_dense_topk_on_random_features(chunk):
    x = random_features(50, 8, seed=0)
    k = 6
    index = graphs.cosine_topk(x, k, chunk_size=chunk)
    ref = dense_cosine(x).topk(k, dim=1)
    # random features have no near-ties: indices match exactly and in order, self first
    gaps = ref.values[:, :-1] - ref.values[:, 1:]
    assert gaps.min() > 1e-5
    assert torch.equal(index, ref.indices)
    assert torch.equal(index[:, 0], torch.arange(50))


@pytest.mark.parametrize("chunk", [3, 7, 40])
def test_cosine_topk_exclude_self(chunk):
    x = random_features(40, 5, seed=1)
    k = 4
    index = graphs.cosine_topk(x, k, chunk_size=chunk, exclude_self=True)
    s = dense_cosine(x)
    s.fill_diagonal_(-float("inf"))
    assert torch.equal(index, s.topk(k, dim=1).indices)
    assert not (index == torch.arange(40)[:, None]).any()


@pytest.mark.parametrize("chunk", [3, 7, 40])
def test_cosine_topk_with_ties_and_zero_rows(chunk):
    x = features_with_ties_and_zeros()
    k = 4
    index = graphs.cosine_topk(x, k, chunk_size=chunk)
    assert_valid_topk(index, x, k)
    s = dense_cosine(x)
    # rows of the duplicate group keep only cosine-1 neighbours (5 identical rows > k = 4)
    for row in (7, 20, 21, 22, 23):
        assert set(index[row].tolist()) <= {7, 20, 21, 22, 23}
        torch.testing.assert_close(s[row, index[row]], torch.ones(k), atol=TOL, rtol=0)
    # the duplicate pair and the parallel pair keep each other (tied with self at cosine 1)
    assert {4, 5} <= set(index[4].tolist()) and {4, 5} <= set(index[5].tolist())
    assert {10, 11} <= set(index[10].tolist()) and {10, 11} <= set(index[11].tolist())
    # a zero row has similarity 0 with everything: its kept values are all 0
    assert (s[30, index[30]] == 0).all() and (s[31, index[31]] == 0).all()


# ------------------------------------------------------------------------------ kNN graph, edges
@pytest.mark.parametrize("norm_type", ["sym", "rw", "none"])
@pytest.mark.parametrize("chunk", [3, 7, 50])
def test_knn_graph_equals_dense_reference(norm_type, chunk):
    x = random_features(50, 8, seed=2)
    k = 5
    adj = graphs.knn_graph(x, k, norm_type, chunk_size=chunk)
    assert adj.is_sparse and adj.shape == (50, 50)
    assert adj._nnz() == 50 * k
    torch.testing.assert_close(adj.to_dense(), dense_knn(x, k, norm_type), atol=TOL, rtol=0)


@pytest.mark.parametrize("chunk", [3, 7, 40])
def test_knn_edges_layout_and_values(chunk):
    x = random_features(40, 8, seed=4)
    k = 3
    rows, cols, values = graphs.knn_edges(x, k, chunk_size=chunk)
    s = dense_cosine(x)
    ref = s.topk(k, dim=1)
    assert torch.equal(rows, torch.arange(40).repeat_interleave(k))
    assert torch.equal(cols, ref.indices.reshape(-1))
    torch.testing.assert_close(values, ref.values.reshape(-1), atol=TOL, rtol=0)
    assert not values.requires_grad


@pytest.mark.parametrize("norm_type", ["sym", "rw"])
@pytest.mark.parametrize("chunk", [3, 7, 40])
def test_knn_graph_with_ties_and_zero_rows(norm_type, chunk):
    x = features_with_ties_and_zeros()
    k = 4
    rows, cols, values = graphs.knn_edges(x, k, chunk_size=chunk)
    index = cols.view(-1, k)
    assert_valid_topk(index, x, k)
    adj = graphs.knn_graph(x, k, norm_type, chunk_size=chunk).to_dense()
    assert torch.isfinite(adj).all()
    # on the edges the search chose (ties make the choice arbitrary), the weights are the dense formula
    torch.testing.assert_close(adj, dense_knn(x, k, norm_type, index=index), atol=TOL, rtol=0)
    # the zero rows have degree 0: no weight leaves them; under sym no weight enters them either
    assert (adj[30] == 0).all() and (adj[31] == 0).all()
    if norm_type == "sym":
        assert (adj[:, 30] == 0).all() and (adj[:, 31] == 0).all()
    # per-row sorted weights are tie-independent for rw (they only depend on the row's own values)
    if norm_type == "rw":
        ref = dense_knn(x, k, "rw")
        torch.testing.assert_close(adj.sort(1).values, ref.sort(1).values, atol=TOL, rtol=0)


@pytest.mark.parametrize("norm_type", ["sym", "rw"])
def test_normalize_edges_nonpositive_degrees_get_zero_weight(norm_type):
    # node 0: degree 1.5; node 1: degree 0 (+1 −1); node 2: degree −0.5; node 3: no edges
    rows = torch.tensor([0, 0, 1, 1, 2, 2])
    cols = torch.tensor([0, 1, 1, 2, 2, 0])
    values = torch.tensor([1.0, 0.5, 1.0, -1.0, 0.5, -1.0])
    out = graphs.normalize_edges(rows, cols, values, 4, norm_type)
    assert torch.isfinite(out).all()
    dense = torch.zeros(4, 4).index_put((rows, cols), values)
    expected_dense = dense_normalise(dense, norm_type)
    torch.testing.assert_close(out, expected_dense[rows, cols], atol=TOL, rtol=0)
    assert (out[2:] == 0).all() and (out[4:] == 0).all()  # rows 1 and 2 have degree ≤ 0
    if norm_type == "sym":
        assert out[1] == 0  # edge 0 → 1 ends in a degree-0 node
        torch.testing.assert_close(out[0], torch.tensor(1.0 / 1.5))
    else:
        torch.testing.assert_close(out[:2], values[:2] / 1.5)


def test_normalize_edges_none_and_unknown():
    rows, cols = torch.tensor([0, 1]), torch.tensor([1, 0])
    values = torch.tensor([0.3, 0.7])
    assert torch.equal(graphs.normalize_edges(rows, cols, values, 2, "none"), values)
    with pytest.raises(ValueError, match="norm_type"):
        graphs.normalize_edges(rows, cols, values, 2, "bogus")


# ------------------------------------------------------------------------------ mix, propagate, pad
def random_sparse(n, nnz, seed):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, n, (2, nnz), generator=g)
    values = torch.rand(nnz, generator=g)
    return torch.sparse_coo_tensor(index, values, (n, n)).coalesce()


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.9, 1.0])
def test_mix_graphs_equals_dense_combination(lam):
    a, b = random_sparse(12, 30, seed=0), random_sparse(12, 25, seed=1)
    mixed = graphs.mix_graphs(a, b, lam)
    assert mixed.is_sparse
    torch.testing.assert_close(mixed.to_dense(), (1 - lam) * a.to_dense() + lam * b.to_dense(), atol=TOL, rtol=0)


@pytest.mark.parametrize("n_layers", [0, 1, 2, 3])
def test_propagate_equals_dense_power(n_layers):
    adj = graphs.knn_graph(random_features(30, 6, seed=5), 4)
    x = random_features(30, 7, seed=6)
    expected = torch.linalg.matrix_power(adj.to_dense(), n_layers) @ x
    torch.testing.assert_close(graphs.propagate(adj, x, n_layers), expected, atol=1e-5, rtol=0)


def test_pad_graph_shifts_ids_and_leaves_pad_empty():
    adj = graphs.knn_graph(random_features(20, 5, seed=7), 3)
    padded = graphs.pad_graph(adj)
    assert padded.shape == (21, 21) and padded._nnz() == adj._nnz()
    dense, ref = padded.to_dense(), adj.to_dense()
    assert torch.equal(dense[1:, 1:], ref)
    assert (dense[0] == 0).all() and (dense[:, 0] == 0).all()
    assert torch.equal(padded.indices(), adj.indices() + 1)
    # propagation over the padded graph gives the [PAD] row nothing and the real rows the same result
    x = random_features(21, 4, seed=8)
    out = graphs.propagate(padded, x, 1)
    assert (out[0] == 0).all()
    torch.testing.assert_close(out[1:], graphs.propagate(adj, x[1:], 1), atol=TOL, rtol=0)


# ------------------------------------------------------------------------------ learned graph
@pytest.mark.parametrize("chunk", [3, 7, 30])
def test_learned_graph_values_and_gradients_match_dense_autograd(chunk):
    n, d, k = 30, 8, 5
    base = random_features(n, d, seed=9)
    upstream = random_features(n, n, seed=10)  # a random upstream gradient W

    x_sparse = base.clone().requires_grad_(True)
    adj = graphs.knn_graph(x_sparse, k, "sym", chunk, with_grad=True)
    assert adj.values().requires_grad
    (grad_sparse,) = torch.autograd.grad((adj.to_dense() * upstream).sum(), x_sparse)

    # dense reference: dense cosine → topk → scatter into zeros → D^-1/2 A D^-1/2, all through autograd
    x_dense = base.clone().requires_grad_(True)
    xn = x_dense / x_dense.norm(dim=1, keepdim=True)
    s = xn @ xn.t()
    top = s.topk(k, dim=1)
    a = torch.zeros(n, n).scatter(1, top.indices, top.values)
    inv = a.sum(1).pow(-0.5)
    ref = inv[:, None] * a * inv[None, :]
    (grad_dense,) = torch.autograd.grad((ref * upstream).sum(), x_dense)

    torch.testing.assert_close(adj.to_dense(), ref.detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(grad_sparse, grad_dense, atol=1e-5, rtol=0)
    assert grad_dense.abs().max() > 1e-3  # the comparison is not between two zero gradients


def test_fixed_graph_has_no_gradient():
    x = random_features(20, 4, seed=11).requires_grad_(True)
    adj = graphs.knn_graph(x, 3, "sym", 7, with_grad=False)
    assert not adj.values().requires_grad
