"""FREEDOM (Zhou & Shen, ACM MM 2023) on tiny generated data, every piece against dense float64 formulas
written from the paper and the authors' code (``recbole_micro/model/freedom.py`` docstring):

* the frozen item graph S = Σ_m α_m D^-1/2 kNN_binary(E_m) D^-1/2 from the raw features, never updated;
* the degree-sensitive pruning: kept edges drawn with probability ∝ 1/√(d_u d_i), checked against the EXACT
  inclusion probabilities of the authors' draw (sequential, without replacement) and of the paper's
  (n independent trials), the kept graph renormalised with its own degrees, redrawn once per epoch;
* the loss L_BPR + λ Σ_m L_BPR(u, W_m e^m + b_m) and every parameter's gradient;
* end to end through RecBole's trainer: each epoch trains on its own pruned graph, evaluation on the full
  one, and removing the pruning or the item graph changes what is learned.
"""

import itertools
import math

import functools

import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import REPO, run_config, train_on_synthetic
from dense_reference import dense_normalise, padded
from tiny_builds import assert_gradients_close, in_float64, tiny_builds
from recbole_micro.checkpoint import load_checkpoint
from recbole_micro.errors import ConfigError
from recbole_micro.model import graphs
from recbole_micro.model.freedom import FREEDOM, modality_weights
from recbole_micro.quick_start import run_recbole_micro
from recbole_micro.utils import get_model



@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``{n_modalities: (config, train_data)}`` of one tiny generated dataset (30 users, 18 items)."""
    return tiny_builds(tmp_path_factory, "FREEDOM", knn_k=3, reg_weight=0.3, train_batch_size=32)


freedom_in_float64 = functools.partial(in_float64, FREEDOM)


# ------------------------------------------------------------------------------ dense references
def dense_item_graph(config, raw, modalities, dtype=torch.float64):
    r"""S = Σ_m α_m D^-1/2 Ŝ^m D^-1/2, Ŝ^m_ij = 1 for the k most cosine-similar j of i (itself included)."""
    alphas = modality_weights(modalities, config["mm_image_weight"])
    total = 0
    for alpha, m in zip(alphas, modalities):
        x = raw[m][1:].to(dtype)
        cos = F.normalize(x, dim=1) @ F.normalize(x, dim=1).t()
        binary = torch.zeros_like(cos).scatter(1, cos.topk(config["knn_k"], dim=1).indices, 1.0)
        total = total + alpha * padded(dense_normalise(binary, "sym"))
    return total


def dense_ui_graph(users, items, n_users, n_items, dtype=torch.float64):
    r"""D^-1/2 [[0, R], [Rᵀ, 0]] D^-1/2 of the interactions (``users[k]``, ``items[k]``)."""
    a = torch.zeros(n_users + n_items, n_users + n_items, dtype=dtype)
    a[users, items + n_users] = 1.0
    a[items + n_users, users] = 1.0
    return dense_normalise(a, "sym")


def dense_freedom(config, model, params, raw, ui, batch):
    """Losses (bpr, modal) from the formulas, the graphs dense, autograd through ``params``."""
    s = dense_item_graph(config, raw, model.modalities)
    h = params["item_embedding.weight"]
    for _ in range(config["n_mm_layers"]):
        h = s @ h
    ego = torch.cat([params["user_embedding.weight"], params["item_embedding.weight"]])
    layers = [ego]
    for _ in range(config["n_ui_layers"]):
        layers.append(ui @ layers[-1])
    out = torch.stack(layers).mean(0)
    users, items = out[: model.n_users], out[model.n_users :] + h
    u, pos, neg = users[batch["user_id"]], batch["item_id"], batch["neg_item_id"]

    def bpr(p, n):
        return -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()

    modal = 0
    for m in model.modalities:
        x = params[f"features.{m}.weight"] @ params[f"projections.{m}.weight"].t() + params[f"projections.{m}.bias"]
        modal = modal + bpr(x[pos], x[neg])
    return {"bpr": bpr(items[pos], items[neg]), "modal": config["reg_weight"] * modal, "users": users, "items": items}


def edge_list(dataset):
    r = dataset.inter_matrix(form="csr").tocoo()
    return torch.from_numpy(r.row).long(), torch.from_numpy(r.col).long()


# ------------------------------------------------------------------------------ defaults and look-up
def test_found_by_name_with_the_authors_defaults(built):
    config, train_data = built[2]
    assert get_model("FREEDOM") is FREEDOM
    for key, value in dict(embedding_size=8, knn_k=3, mm_image_weight=0.1, n_mm_layers=1, n_ui_layers=2, dropout=0.8,
                           edge_sampling="distinct", freeze_features=False, learning_rate=1e-3,
                           train_sampler="interaction").items():
        assert config[key] == value, key
    assert FREEDOM.loss_names == ("bpr", "modal_bpr")


@pytest.mark.parametrize("key, value", [("dropout", 1.0), ("dropout", -0.1), ("mm_image_weight", 1.5),
                                        ("edge_sampling", "uniform"), ("n_ui_layers", -1), ("knn_k", 0),
                                        ("knn_k", 18), ("freeze_features", "yes")])
def test_bad_values_are_one_clear_error(built, key, value):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        freedom_in_float64(built[2], **{key: value})


# ------------------------------------------------------------------------------ the frozen item graph
@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("image_weight", [0.1, 0.7])
def test_frozen_item_graph_equals_dense_formula(built, n_modalities, image_weight):
    config, model, train_data = freedom_in_float64(built[n_modalities], mm_image_weight=image_weight)
    raw = train_data._dataset.modality_features
    # built once from the float32 features: float32 edge values (1/k)
    torch.testing.assert_close(model.item_adj.to_dense(), dense_item_graph(config, raw, model.modalities),
                               atol=1e-7, rtol=0)
    weights = modality_weights(model.modalities, image_weight)
    assert weights[0] == image_weight and sum(weights) == pytest.approx(1.0)  # image first: the rest share 1 − α
    assert modality_weights(["text"], 0.1) == [1.0] and modality_weights(["a", "b"], 0.1) == [0.5, 0.5]
    dense = model.item_adj.to_dense()
    assert (dense[0] == 0).all() and (dense[:, 0] == 0).all()  # [PAD] has no edges
    assert model.item_adj._nnz() <= n_modalities * config["knn_k"] * (model.n_items - 1)  # N·k per modality


def test_item_graph_stays_frozen_while_the_features_train(built):
    _, model, train_data = freedom_in_float64(built[2])
    before = model.item_adj.to_dense().clone()
    features = {m: model.features[m].weight.detach().clone() for m in model.modalities}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    for batch in itertools.islice(iter(train_data), 3):
        optimizer.zero_grad()
        sum(model.calculate_loss(batch)).backward()
        optimizer.step()
    assert all((model.features[m].weight - features[m]).abs().max() > 1e-3 for m in model.modalities)
    assert torch.equal(model.item_adj.to_dense(), before)


# ------------------------------------------------------------------------------ loss and gradients
@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("n_mm_layers, n_ui_layers", [(1, 2), (2, 1), (0, 0)])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_loss_and_every_gradient_equal_dense_autograd(built, n_modalities, n_mm_layers, n_ui_layers, dropout):
    config, model, train_data = freedom_in_float64(built[n_modalities], n_mm_layers=n_mm_layers,
                                                   n_ui_layers=n_ui_layers, dropout=dropout)
    dataset = train_data._dataset
    batch = next(iter(train_data))
    model.train()
    params = dict(model.named_parameters())
    assert all(p.dtype == torch.float64 for p in params.values())
    losses = dict(zip(("bpr", "modal"), model.calculate_loss(batch)))
    users, items = edge_list(dataset)
    kept = model.kept_edges
    assert kept.numel() == int(users.numel() * (1 - dropout))
    ui = dense_ui_graph(users[kept], items[kept], model.n_users, model.n_items)
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    raw = dataset.modality_features
    ref = dense_freedom(config, model, leaves, raw, ui, batch)
    for term in ("bpr", "modal"):
        torch.testing.assert_close(losses[term].detach(), ref[term].detach(), atol=1e-12, rtol=1e-6, msg=term)
        assert_gradients_close(losses[term], ref[term], params, leaves, term)
        if term == "modal":  # the features and projections are trained through the modality BPR terms only
            assert all(params[f"features.{m}.weight"].shape == raw[m].shape for m in model.modalities)
    assert losses["modal"].item() > 0 and losses["bpr"].item() > 0


# ------------------------------------------------------------------------------ degree-sensitive pruning
def exact_inclusion(weights, n_keep):
    """P(edge k kept) of ``n_keep`` draws WITHOUT replacement, each ∝ weights among the edges left (enumerated)."""
    w = [float(x) for x in weights]
    probability = [0.0] * len(w)
    for order in itertools.permutations(range(len(w)), n_keep):
        p, left = 1.0, sum(w)
        for k in order:
            p *= w[k] / left
            left -= w[k]
        for k in order:
            probability[k] += p
    return torch.tensor(probability, dtype=torch.float64)


# a tiny graph with very unequal degrees: user 0 has 4 items, item 0 has 4 users, user 4 – item 4 stand alone
TINY_USERS = torch.tensor([0, 0, 0, 0, 1, 2, 3, 4])
TINY_ITEMS = torch.tensor([0, 1, 2, 3, 0, 0, 0, 4])


def test_edge_weights_are_inverse_sqrt_degree_products():
    weights = graphs.degree_edge_weights(TINY_USERS, TINY_ITEMS, 5, 5)
    du = torch.bincount(TINY_USERS, minlength=5).double()
    di = torch.bincount(TINY_ITEMS, minlength=5).double()
    torch.testing.assert_close(weights.double(), 1.0 / torch.sqrt(du[TINY_USERS] * di[TINY_ITEMS]), atol=1e-7, rtol=0)


@pytest.mark.parametrize("replacement", [False, True], ids=["distinct (code)", "trials (paper)"])
def test_kept_edges_follow_the_degree_sensitive_distribution(replacement):
    r"""20,000 prunings of the tiny graph: each edge's keep frequency within 4.5 standard errors of its exact
    probability, which is far from the uniform one (a uniform or inverted draw fails)."""
    weights = graphs.degree_edge_weights(TINY_USERS, TINY_ITEMS, 5, 5)
    n_keep, draws = 3, 20000
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(weights.numel(), dtype=torch.float64)
    sizes = []
    for _ in range(draws):
        kept = graphs.sample_edges(weights, n_keep, replacement=replacement, generator=generator)
        counts[kept] += 1
        sizes.append(kept.numel())
    if replacement:  # n independent draws ∝ p: kept unless missed n times
        p = weights.double() / weights.sum().double()
        exact = 1.0 - (1.0 - p) ** n_keep
        assert min(sizes) < n_keep  # repeats collapse
    else:
        exact = exact_inclusion(weights, n_keep)
        assert set(sizes) == {n_keep}
        assert exact.sum().item() == pytest.approx(n_keep)
    freq = counts / draws
    stderr = torch.sqrt(exact * (1 - exact) / draws)
    assert ((freq - exact).abs() <= 4.5 * stderr).all(), (freq, exact)
    # degree sensitivity: the edge of two degree-1 nodes (user 4, item 4) is kept most, the hub–hub edge least,
    # both far (> 0.15) from the uniform draw's 3/8
    assert exact.argmax().item() == 7 and exact.argmin().item() == 0
    uniform = n_keep / weights.numel()
    assert freq[7] - uniform > 0.15 and uniform - freq[0] > 0.15, freq


def test_pruned_graph_is_renormalised_with_the_kept_degrees(built):
    _, model, train_data = freedom_in_float64(built[2], dropout=0.6)
    model.train()
    adj = model.ui_graph()
    users, items = edge_list(train_data._dataset)
    kept = model.kept_edges
    assert kept.numel() == int(users.numel() * 0.4) and kept.unique().numel() == kept.numel()
    dense = adj.to_dense()
    torch.testing.assert_close(dense, dense_ui_graph(users[kept], items[kept], model.n_users, model.n_items),
                               atol=1e-12, rtol=0)
    assert torch.equal(dense, dense.t()) and adj._nnz() == 2 * kept.numel()


def test_pruned_graph_is_drawn_once_per_epoch_and_evaluation_uses_the_full_graph(built):
    config, model, train_data = freedom_in_float64(built[2], dropout=0.5)
    model.train()
    first = model.ui_graph()
    assert model.ui_graph() is first  # every batch of the epoch
    model.train()  # RecBole's next epoch
    second = model.ui_graph()
    assert second is not first and not torch.equal(second.to_dense(), first.to_dense())
    model.eval()
    users, items = edge_list(train_data._dataset)
    full = dense_ui_graph(users, items, model.n_users, model.n_items)
    torch.testing.assert_close(model.ui_graph().to_dense(), full, atol=1e-7, rtol=0)  # built in float32
    batch = {k: v for k, v in next(iter(train_data)).interaction.items()}
    params = dict(model.named_parameters())
    ref = dense_freedom(config, model, params, train_data._dataset.modality_features, full, batch)
    got_users, got_items = model.eval_embeddings()
    torch.testing.assert_close(got_users, ref["users"].detach(), atol=1e-7, rtol=0)
    torch.testing.assert_close(got_items, ref["items"].detach(), atol=1e-7, rtol=0)
    # dropout 0: no pruning, the full graph in training too
    _, model, _ = freedom_in_float64(built[2], dropout=0.0)
    model.train()
    torch.testing.assert_close(model.ui_graph().to_dense(), full, atol=1e-7, rtol=0)


def test_edge_sampling_trials_draws_ceil_n_with_replacement(built):
    _, model, train_data = freedom_in_float64(built[2], dropout=0.5, edge_sampling="trials")
    calls = []
    original = graphs.sample_edges

    def spy(weights, n_keep, replacement=False, generator=None):
        calls.append((n_keep, replacement))
        return original(weights, n_keep, replacement, generator)

    n_edges = edge_list(train_data._dataset)[0].numel()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(graphs, "sample_edges", spy)
        model.train()
        model.ui_graph()
        _, distinct, _ = freedom_in_float64(built[2], dropout=0.5)
        distinct.train()
        distinct.ui_graph()
    assert calls == [(math.ceil(n_edges * 0.5), True), (int(n_edges * 0.5), False)]
    assert model.kept_edges.numel() <= math.ceil(n_edges * 0.5)


# ------------------------------------------------------------------------------ end to end
# the end-to-end data of test_end_to_end.py: sparse (500 users, 2,000 items), the features carry the clusters
E2E_DATA = dict(n_users=500, n_items=2000, n_clusters=20, per_user=(5, 8), affinity=1.0, seed=1)
E2E_TRAIN = dict(epochs=10, eval_step=5, learning_rate=0.01)
ABLATIONS = {"full": {}, "no pruning": {"dropout": 0.0}, "no item graph": {}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``{ablation: (result, state_dict, prunings per epoch)}`` through RecBole's trainer on generated data."""
    def train(root):
        out = {}
        for name, keys in ABLATIONS.items():
            drawn = []
            original = FREEDOM.prune

            def recording(self):
                original(self)
                drawn.append(self.kept_edges.clone())

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(FREEDOM, "prune", recording)
                if name == "no item graph":  # h̃ = 0: the frozen item graph's contribution removed
                    patch.setattr(FREEDOM, "forward", no_item_graph_forward)
                config = run_config(root, checkpoint_dir=str(root / name.replace(" ", "-")), **{**E2E_TRAIN, **keys})
                result = run_recbole_micro("FREEDOM", "syn", config_dict=config)
            out[name] = result, load_checkpoint(result["checkpoint"])["state_dict"], drawn
        return out

    return train_on_synthetic(tmp_path_factory, "freedom-e2e", E2E_DATA, train)[1]


def no_item_graph_forward(self):
    ego = torch.cat([self.user_embedding.weight, self.item_embedding.weight])
    out = graphs.mean_propagate(self.ui_graph(), ego, self.n_ui_layers)
    return out[: self.n_users], out[self.n_users :], None


def test_every_training_epoch_uses_its_own_pruned_graph(trained):
    result, _, drawn = trained["full"]
    assert len(drawn) == E2E_TRAIN["epochs"]  # one draw per epoch, none for evaluation
    sizes = {d.numel() for d in drawn}
    assert len(sizes) == 1
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(drawn, 2))
    assert 0.0 < result["test_result"]["recall@20"] <= 1.0


def test_the_frozen_item_graph_carries_the_feature_signal(trained):
    r"""Measured (data seed 1, config seed 123, 10 epochs, the yaml's 2048 interactions per step): test Recall@20
    0.21 with the item graph, 0.06 without it (h̃ = 0), 0.23 without pruning: on data where only the features
    relate the sparse items, S is what FREEDOM learns from. (Under the user sampler, 1024 per step: 0.230,
    0.100, 0.222.)"""
    recall = {name: r["test_result"]["recall@20"] for name, (r, _, _) in trained.items()}
    print(recall)
    assert recall["full"] > recall["no item graph"] + 0.05, recall


@pytest.mark.parametrize("ablation", ["no pruning", "no item graph"])
def test_removing_a_freedom_component_changes_what_is_learned(trained, ablation):
    (_, full_state, full_drawn), (_, state, drawn) = trained["full"], trained[ablation]
    print({name: r["test_result"]["recall@20"] for name, (r, _, _) in trained.items()})
    moved = {k: (state[k] - full_state[k]).abs().max().item() for k in full_state if full_state[k].is_floating_point()}
    assert moved["item_embedding.weight"] > 1e-4 and moved["user_embedding.weight"] > 1e-4, moved
    if ablation == "no pruning":
        n_edges = drawn[0].numel()
        assert all(d.numel() == n_edges for d in drawn) and full_drawn[0].numel() == int(n_edges * (1 - 0.8))


# ------------------------------------------------------------------------------ the remaining switches
def test_knn_chunk_size_leaves_the_item_graph_equal(built):
    _, whole, _ = freedom_in_float64(built[3], knn_chunk_size=1024)
    _, chunked, _ = freedom_in_float64(built[3], knn_chunk_size=2)
    assert torch.equal(whole.item_adj.to_dense(), chunked.item_adj.to_dense())


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_features(built, freeze):
    r"""False (the authors'): the raw features are parameters the modality BPR terms train; True: fixed, no
    gradient, the projections still trained."""
    _, model, train_data = freedom_in_float64(built[2], freeze_features=freeze)
    model.train()
    sum(model.calculate_loss(next(iter(train_data)))).backward()
    for m in model.modalities:
        assert model.features[m].weight.requires_grad is not freeze
        grad = model.features[m].weight.grad
        assert (grad is None) if freeze else grad.abs().max() > 0
        assert model.projections[m].weight.grad.abs().max() > 0
    raw = train_data._dataset.modality_features["image"]
    assert model.features["image"].weight.data_ptr() != raw.data_ptr() or freeze  # trainable: a copy of its own


SWITCH_TESTED = {"embedding_size", "knn_k", "knn_chunk_size", "mm_image_weight", "n_mm_layers", "n_ui_layers",
                 "dropout", "edge_sampling", "reg_weight", "freeze_features"}


def test_every_yaml_key_is_tested():
    keys = set(yaml.safe_load((REPO / "properties" / "model" / "FREEDOM.yaml").read_text()))
    # RecBole's, the sampler's and untrained_item_ids (tested with every multimodal model in test_coldstart.py)
    assert keys - {"learning_rate", "train_batch_size", "train_sampler", "untrained_item_ids"} == SWITCH_TESTED
