"""MICRO on a tiny generated dataset: every piece of the model recomputed densely from its parameters
and the formulas of ``../shared/design/micro.md`` (graphs §1–2, convolution §3, fusion §4, backbones §5,
scoring §6, losses §7), and the rebuild/caching rules of the learned item graphs."""

import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from conftest import run_config
from dense_reference import dense_interactions, dense_knn, dense_lightgcn, dense_sym, padded
from recbole_micro.model.losses import contrastive_loss
from recbole_micro.quick_start import build

TOL = 1e-5


# ------------------------------------------------------------------------------ dense references
def dense_knn_sym_padded(x, k):
    """D^-1/2 kNN(cos(x[1:])) D^-1/2, embedded with an empty [PAD] row/column 0."""
    return padded(dense_knn(x[1:], k, "sym"))


def dense_item_graphs(model):
    """A_m = (1 − λ) Â_m + λ S̃_m, all dense, from the raw features and the projections."""
    out = {}
    for m in model.modalities:
        raw = model.features[m].weight.detach()
        learned = dense_knn_sym_padded(model.projections[m](raw).detach(), model.knn_k)
        original = dense_knn_sym_padded(raw, model.knn_k)
        out[m] = (1 - model.lambda_coeff) * learned + model.lambda_coeff * original
    return out


def dense_fuse(model, hs):
    """β_m = softmax_m q(H_m), q(x) = w₂ᵀ tanh(W₁x + b₁); h = Σ_m β_m H_m."""
    lin1, lin2 = model.query[0], model.query[2]
    scores = [torch.tanh(h @ lin1.weight.t() + lin1.bias) @ lin2.weight.t() for h in hs]  # (N, 1) each
    e = torch.exp(torch.cat(scores, dim=1))  # (N, M)
    beta = e / e.sum(1, keepdim=True)
    return sum(beta[:, j : j + 1] * h for j, h in enumerate(hs))


def dense_forward(model, train_dataset):
    """Final user/item embeddings (LightGCN on D^-1(A+I), 2 layers, mean of E⁰..E²) + H_m + h."""
    xu, xi = model.user_embedding.weight.detach(), model.item_embedding.weight.detach()
    users, items_cf = dense_lightgcn(train_dataset, xu, xi)
    item_adj = dense_item_graphs(model)
    hs = [item_adj[m] @ xi for m in model.modalities]  # n_item_layers = 1
    h = dense_fuse(model, hs)
    # h / ‖h‖ (the [PAD] row of h is 0 and stays 0: ‖h‖ is floored at 1e-12 as F.normalize does)
    items = items_cf + h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return users, items, hs, h


def dense_contrastive(z1, z2, tau):
    """GRACE (micro.md §7): ℓ_i = −log(e^{c(z1_i,z2_i)/τ} / (Σ_{j≠i} e^{c(z1_i,z1_j)/τ} + Σ_j e^{c(z1_i,z2_j)/τ}))."""
    n = z1.shape[0]
    c11 = (z1 @ z1.t()) / (z1.norm(dim=1)[:, None] * z1.norm(dim=1)[None, :])
    c12 = (z1 @ z2.t()) / (z1.norm(dim=1)[:, None] * z2.norm(dim=1)[None, :])
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    denominator = (torch.exp(c11 / tau) * off_diagonal).sum(1) + torch.exp(c12 / tau).sum(1)
    return (-(c12.diagonal() / tau) + torch.log(denominator)).mean()


# ------------------------------------------------------------------------------ model factory
@pytest.fixture
def make_model(synthetic, tmp_path):
    def make(**overrides):
        name = synthetic("tiny", n_users=40, n_items=30, n_clusters=4, per_user=(4, 7), seed=0)
        config_dict = run_config(tmp_path, device="cpu", use_gpu=False, knn_k=4, seed=7, **overrides)
        config, model, trainer, data = build("MICRO", name, config_dict=config_dict)
        return model, data

    return make


def first_batch(train_data):
    return next(iter(train_data))


# ------------------------------------------------------------------------------ structure
def test_original_graphs_are_dense_knn_of_raw_features(make_model):
    model, (train_data, _, _) = make_model()
    assert model.n_items == 31 and model.n_users == 41  # 30 items / 40 users + [PAD]
    for m in model.modalities:
        raw = train_data._dataset.modality_features[m]
        torch.testing.assert_close(model.original_adj[m].to_dense(), dense_knn_sym_padded(raw, 4), atol=1e-6, rtol=0)
        assert model.original_adj[m]._nnz() == 30 * 4


def test_fuse_is_softmax_attention(make_model):
    model, _ = make_model()
    g = torch.Generator().manual_seed(0)
    hs = [torch.randn(31, 64, generator=g) for _ in model.modalities]
    with torch.no_grad():
        fused = model.fuse(hs)
    torch.testing.assert_close(fused, dense_fuse(model, hs), atol=TOL, rtol=0)
    # the weights are a convex combination: fusing identical inputs returns them
    with torch.no_grad():
        torch.testing.assert_close(model.fuse([hs[0]] * 3), hs[0], atol=TOL, rtol=0)


def test_forward_equals_dense_recomputation(make_model):
    model, (train_data, _, _) = make_model()
    model.eval()
    with torch.no_grad():
        users, items, hs, h = model.forward()
    ref_users, ref_items, ref_hs, ref_h = dense_forward(model, train_data._dataset)
    assert users.shape == (41, 64) and items.shape == (31, 64)
    for got, ref in zip(hs, ref_hs):
        torch.testing.assert_close(got, ref, atol=TOL, rtol=0)
    torch.testing.assert_close(h, ref_h, atol=TOL, rtol=0)
    torch.testing.assert_close(users, ref_users, atol=TOL, rtol=0)
    torch.testing.assert_close(items, ref_items, atol=TOL, rtol=0)
    # [PAD] item has no item-graph edges: its H_m rows are 0
    assert all((x[0] == 0).all() for x in hs)


def test_rw_and_sym_user_item_graphs(make_model):
    model, (train_data, _, _) = make_model()
    U, N = model.n_users, model.n_items
    a = dense_interactions(train_data._dataset, U, N)
    rw = (a + torch.eye(U + N)) / (a + torch.eye(U + N)).sum(1, keepdim=True)
    torch.testing.assert_close(model.backbone.adj.to_dense(), rw, atol=1e-6, rtol=0)
    model_sym, _ = make_model(ui_norm="sym")
    torch.testing.assert_close(model_sym.backbone.adj.to_dense(), dense_sym(a), atol=1e-6, rtol=0)
    # the [PAD] user and item have no interactions: zero rows under sym, only the self-loop under rw
    assert (dense_sym(a)[0] == 0).all() and rw[0, 0] == 1.0


def test_scores_are_inner_products(make_model):
    model, (train_data, _, _) = make_model()
    model.eval()
    users_ids = torch.tensor([1, 5, 17, 40])
    with torch.no_grad():
        scores = model.full_sort_predict(Interaction({"user_id": users_ids}))
    ref_users, ref_items, _, _ = dense_forward(model, train_data._dataset)
    expected = ref_users[users_ids] @ ref_items.t()
    assert scores.shape == (4 * 31,)
    torch.testing.assert_close(scores.view(4, 31), expected, atol=TOL, rtol=0)
    item_ids = torch.tensor([3, 30, 1, 12])
    with torch.no_grad():
        pointwise = model.predict(Interaction({"user_id": users_ids, "item_id": item_ids}))
    torch.testing.assert_close(pointwise, scores.view(4, 31)[torch.arange(4), item_ids], atol=TOL, rtol=0)


# ------------------------------------------------------------------------------ losses
def test_loss_terms_equal_direct_computation(make_model):
    model, (train_data, _, _) = make_model()
    model.train()
    batch = first_batch(train_data)
    loss_bpr, loss_emb, loss_cl = model.calculate_loss(batch)

    users, items, hs, h = dense_forward(model, train_data._dataset)
    u = users[batch["user_id"]]
    pos, neg = items[batch["item_id"]], items[batch["neg_item_id"]]
    B = len(batch)
    expected_bpr = -F.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()
    expected_emb = model.reg_weight * 0.5 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / B
    expected_cl = model.loss_ratio * sum(dense_contrastive(hm[1:], h[1:], model.temperature) for hm in hs)

    assert model.reg_weight == 1e-5 and model.loss_ratio == 0.03 and model.temperature == 0.5
    torch.testing.assert_close(loss_bpr.detach(), expected_bpr, atol=TOL, rtol=0)
    torch.testing.assert_close(loss_emb.detach(), expected_emb, atol=1e-9, rtol=1e-5)
    torch.testing.assert_close(loss_cl.detach(), expected_cl, atol=TOL, rtol=1e-6)
    # [PAD] is excluded: the same loss over all rows (row 0 included) has a different value
    with_pad = model.loss_ratio * sum(contrastive_loss(hm, h, model.temperature) for hm in hs)
    assert abs(with_pad.item() - expected_cl.item()) > 1e-4
    # every term reaches the parameters (the contrastive one through the learned graph)
    total = loss_bpr + loss_emb + loss_cl
    total.backward()
    for name in ["user_embedding.weight", "item_embedding.weight", "query.0.weight"] + [
        f"projections.{m}.weight" for m in model.modalities
    ]:
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


@pytest.mark.parametrize("chunk", [1, 3, 7, 30, 4096])
def test_chunked_contrastive_loss_equals_dense(chunk):
    g = torch.Generator().manual_seed(1)
    z1_base, z2_base = torch.randn(30, 16, generator=g), torch.randn(30, 16, generator=g)
    z1, z2 = z1_base.clone().requires_grad_(True), z2_base.clone().requires_grad_(True)
    loss = contrastive_loss(z1, z2, 0.5, chunk)
    r1, r2 = z1_base.clone().requires_grad_(True), z2_base.clone().requires_grad_(True)
    ref = dense_contrastive(r1, r2, 0.5)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=0)
    g1, g2 = torch.autograd.grad(loss, (z1, z2))
    r_g1, r_g2 = torch.autograd.grad(ref, (r1, r2))
    torch.testing.assert_close(g1, r_g1, atol=1e-6, rtol=0)
    torch.testing.assert_close(g2, r_g2, atol=1e-6, rtol=0)
    assert r_g1.abs().max() > 1e-4


# ------------------------------------------------------------------------------ backbones
def test_mf_backbone_returns_ego_embeddings(make_model):
    model, (train_data, _, _) = make_model(cf_model="mf")
    model.eval()
    xu, xi = model.user_embedding.weight, model.item_embedding.weight
    users, items = model.backbone(xu, xi)
    assert users is xu and items is xi
    with torch.no_grad():
        out_users, out_items, _, h = model.forward()
    assert out_users.shape == (41, 64) and out_items.shape == (31, 64)
    torch.testing.assert_close(out_users, xu.detach(), atol=0, rtol=0)
    torch.testing.assert_close(out_items, xi.detach() + h / h.norm(dim=1, keepdim=True).clamp_min(1e-12), atol=TOL, rtol=0)


def test_ngcf_backbone_shapes_and_layers(make_model):
    model, (train_data, _, _) = make_model(cf_model="ngcf")
    assert len(model.backbone.gc) == 2 and len(model.backbone.bi) == 2
    model.eval()  # no dropout: the layers can be recomputed densely
    xu, xi = model.user_embedding.weight.detach(), model.item_embedding.weight.detach()
    with torch.no_grad():
        users, items = model.backbone(xu, xi)
    assert users.shape == (41, 64) and items.shape == (31, 64)
    adj = model.backbone.adj.to_dense()
    ego = torch.cat([xu, xi])
    layers = [ego]
    with torch.no_grad():
        for gc, bi in zip(model.backbone.gc, model.backbone.bi):
            side = adj @ ego
            ego = F.leaky_relu(gc(side)) + F.leaky_relu(bi(ego * side))
            layers.append(ego / ego.norm(dim=1, keepdim=True).clamp_min(1e-12))
    out = torch.stack(layers).mean(0)
    torch.testing.assert_close(users, out[:41], atol=TOL, rtol=0)
    torch.testing.assert_close(items, out[41:], atol=TOL, rtol=0)
    # in training mode dropout makes two passes differ
    model.train()
    a, _ = model.backbone(xu, xi)
    b, _ = model.backbone(xu, xi)
    assert not torch.allclose(a, b)


# ------------------------------------------------------------------------------ rebuild / caching
def test_learned_graph_rebuild_and_eval_cache(make_model, monkeypatch):
    model, (train_data, _, _) = make_model()
    calls = []
    original = model.learned_adj

    def counting():
        calls.append(1)
        return original()

    monkeypatch.setattr(model, "learned_adj", counting)
    batch = first_batch(train_data)

    # training: the first call after model.train() rebuilds with gradient ...
    model.train()
    model.calculate_loss(batch)
    assert len(calls) == 1
    first = {m: a.values().clone() for m, a in model.item_adj.items()}
    assert all(a.values().requires_grad for a in model.item_adj.values())
    # ... the next calls reuse the same graph, detached
    model.calculate_loss(batch)
    model.calculate_loss(batch)
    assert len(calls) == 1
    assert not any(a.values().requires_grad for a in model.item_adj.values())
    assert all(torch.equal(model.item_adj[m].values(), first[m].detach()) for m in model.modalities)
    # a new epoch (model.train()) rebuilds
    model.train()
    model.calculate_loss(batch)
    assert len(calls) == 2

    # evaluation: embeddings computed once, whatever the number of scoring calls
    model.eval()
    users = Interaction({"user_id": torch.tensor([1, 2, 3])})
    with torch.no_grad():
        s1 = model.full_sort_predict(users)
        s2 = model.full_sort_predict(users)
        model.full_sort_predict(Interaction({"user_id": torch.tensor([9])}))
        model.predict(Interaction({"user_id": torch.tensor([1]), "item_id": torch.tensor([4])}))
    assert len(calls) == 3
    assert torch.equal(s1, s2)
    assert model.restore_user_e is not None and not model.restore_item_e.requires_grad

    # a training step clears the cache, so the next evaluation recomputes (once)
    model.train()
    model.calculate_loss(batch)
    assert model.restore_user_e is None and model.restore_item_e is None
    assert len(calls) == 4
    model.eval()
    with torch.no_grad():
        model.full_sort_predict(users)
        model.full_sort_predict(users)
    assert len(calls) == 5
