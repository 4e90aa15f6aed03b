"""MICRO's whole loss against dense autograd (``dense_reference.dense_micro``, written from
``../shared/design/micro.md`` §1–7): every loss term and every parameter's gradient, through the learned
graphs (top-k under no_grad, kept cosines with gradient, normalisation, λ-mix), the item-graph
convolution, the attention fusion, the contrastive term and the CF backbone, in float64 on a tiny
dataset, for n_item_layers 1/2 × knn_norm sym/rw × 2/3 modalities × cf_model lightgcn/ngcf/mf."""

import functools

import pytest
import torch

from dense_reference import dense_micro
from tiny_builds import assert_gradients_close, in_float64, tiny_builds
from recbole_micro.model import graphs
from recbole_micro.model.micro import MICRO

TERMS = ("bpr", "emb", "cl")
# parameters the contrastive term cannot reach: it is a function of H_m = A_m^L X_i and h only
NOT_REACHED = {"cl": ("user_embedding.", "backbone.")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Config and training data of one tiny generated dataset (30 users, 18 items) per number of modalities."""
    return tiny_builds(tmp_path_factory, "MICRO", knn_k=3, weight_size=[8, 8], lambda_coeff=0.6, ngcf_dropout=0.0, train_batch_size=32)


micro_in_float64 = functools.partial(in_float64, MICRO)


@pytest.mark.parametrize("cf_model", ["lightgcn", "ngcf", "mf"])
@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("knn_norm", ["sym", "rw"])
@pytest.mark.parametrize("n_item_layers", [1, 2])
def test_loss_and_every_gradient_equal_dense_autograd(built, cf_model, n_modalities, knn_norm, n_item_layers):
    config, model, train_data = micro_in_float64(built[n_modalities], cf_model=cf_model, knn_norm=knn_norm,
                                                 n_item_layers=n_item_layers)
    assert config["knn_norm"] == knn_norm and config["n_item_layers"] == n_item_layers  # resolved as asked
    dataset = train_data._dataset
    batch = next(iter(train_data))
    model.train()
    params = dict(model.named_parameters())
    assert all(p.dtype == torch.float64 for p in params.values())
    losses = dict(zip(TERMS, model.calculate_loss(batch)))  # first batch of an epoch: graph with gradient

    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    raw = {m: x.double() for m, x in dataset.modality_features.items()}
    ref = dense_micro(config, dataset, leaves, raw, batch={k: batch[k] for k in ("user_id", "item_id", "neg_item_id")})

    for term in TERMS:
        torch.testing.assert_close(losses[term].detach(), ref[term].detach(), atol=1e-12, rtol=1e-6, msg=term)
        scales = assert_gradients_close(losses[term], ref[term], params, leaves, term)
        for name, scale in scales.items():
            reached = not any(name.startswith(p) for p in NOT_REACHED.get(term, ()))
            assert (scale > 0) == reached, f"{term} / {name}: gradient {'missing' if reached else 'unexpected'}"
    assert losses["cl"].item() > 0 and losses["bpr"].item() > 0


# ------------------------------------------------------------------------------ the two hand-written gradients
@pytest.mark.parametrize("chunk", [1, 3, 1 << 16])
def test_edge_sparse_product_gradient_is_not_transposed(chunk):
    r"""``graphs.sparse_mm`` (Y = A X with its own backward): ∂L/∂A_ij = ⟨∂L/∂Y_i, X_j⟩ on every stored
    edge (not ⟨∂L/∂Y_j, X_i⟩) and ∂L/∂X = Aᵀ ∂L/∂Y, on a DIRECTED graph (A ≠ Aᵀ), as dense autograd."""
    g = torch.Generator().manual_seed(2)
    n, d = 9, 4
    rows = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 8])
    cols = torch.tensor([1, 4, 2, 0, 3, 8, 6, 5, 2, 1, 0, 7])
    values = torch.rand(rows.numel(), generator=g, dtype=torch.float64) + 0.1
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    upstream = torch.randn(n, d, generator=g, dtype=torch.float64)
    assert not torch.equal(torch.zeros(n, n).index_put((rows, cols), torch.ones(12)),
                           torch.zeros(n, n).index_put((cols, rows), torch.ones(12)))  # directed

    v1, x1 = values.clone().requires_grad_(True), x.clone().requires_grad_(True)
    adj = torch.sparse_coo_tensor(torch.stack([rows, cols]), v1, (n, n)).coalesce()
    y = graphs.sparse_mm(adj, x1, chunk_size=chunk)
    grad_values, grad_x = torch.autograd.grad((y * upstream).sum(), [v1, x1])

    v2, x2 = values.clone().requires_grad_(True), x.clone().requires_grad_(True)
    dense = torch.zeros(n, n, dtype=torch.float64).index_put((rows, cols), v2)
    ref_values, ref_x = torch.autograd.grad(((dense @ x2) * upstream).sum(), [v2, x2])
    torch.testing.assert_close(y.detach(), (dense @ x2).detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_values, ref_values, atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_values, (upstream[rows] * x[cols]).sum(1), atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_x, ref_x, atol=1e-12, rtol=0)


def test_learned_cosine_gradient_reaches_the_neighbour_side():
    r"""``graphs.cosine_values`` S_{i,j} = cos(x_i, x_j) for j ∈ kNN(i): the gradient reaches x_j through
    the neighbour side, not only x_i through the anchor side. With an upstream gradient on row 0's edges
    only, every other row's gradient comes from being row 0's neighbour, and equals dense autograd."""
    g = torch.Generator().manual_seed(6)
    n, d, k = 12, 5, 4
    x0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    index = graphs.cosine_topk(x0, k, chunk_size=5)
    upstream = torch.zeros(n, k, dtype=torch.float64)
    upstream[0] = torch.rand(k, generator=g, dtype=torch.float64) + 0.5

    x1 = x0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((graphs.cosine_values(x1, index, chunk_size=5) * upstream).sum(), x1)
    x2 = x0.clone().requires_grad_(True)
    xn = x2 / x2.norm(dim=1, keepdim=True)
    (ref,) = torch.autograd.grad(((xn @ xn.t()).gather(1, index) * upstream).sum(), x2)
    torch.testing.assert_close(grad, ref, atol=1e-12, rtol=0)
    neighbours = set(index[0].tolist()) - {0}
    assert len(neighbours) == k - 1  # row 0's own cosine is 1: it is its own first neighbour
    for row in range(1, n):
        reached = grad[row].abs().max().item() > 1e-6
        assert reached == (row in neighbours), row
