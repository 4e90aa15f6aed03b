"""LATTICE on tiny generated datasets: every piece recomputed densely from the parameters and the
formulas of ``../shared/design/micro.md`` §9 (α = softmax(w); learned graph = symnorm(Σ_m α_m kNN(F_m));
original graph = Σ_m α_m S̃_m; A = (1−λ)·learned + λ·original; h = A X_i; ĩ = i_CF + h/‖h‖;
loss = BPR + L_emb), gradients included, plus its defaults, look-ups and one short training run."""

import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from conftest import run_config
from dense_reference import dense_knn, dense_lightgcn, dense_sym, padded
from recbole_micro.model import graphs
from recbole_micro.model.lattice import LATTICE
from recbole_micro.quick_start import build, load_data_and_model, run_recbole_micro
from recbole_micro.trainer import LATTICETrainer
from recbole_micro.utils import get_model, get_trainer

TOL = 1e-5


# ------------------------------------------------------------------------------ dense references
def dense_item_graph(model, params=None):
    """A = (1−λ) symnorm(Σ_m α_m kNN(W_m E_m + b_m)) + λ Σ_m α_m symnorm(kNN(E_m)), dense, with autograd
    through ``params`` (default: the model's own parameters)."""
    p = params or dict(model.named_parameters())
    alpha = torch.softmax(p["modal_weight"], dim=0)
    k = model.knn_k
    learned, original = 0, 0
    for j, m in enumerate(model.modalities):
        raw = p[f"features.{m}.weight"]
        projected = raw @ p[f"projections.{m}.weight"].t() + p[f"projections.{m}.bias"]
        learned = learned + alpha[j] * dense_knn(projected[1:], k, "none")
        original = original + alpha[j] * dense_knn(raw[1:].detach(), k, "sym")
    return padded((1 - model.lambda_coeff) * dense_sym(learned) + model.lambda_coeff * original)


def dense_forward(model, train_dataset):
    """LightGCN on D^-1(A+I), 2 layers, mean of E⁰..E²; ĩ = i_CF + h/‖h‖ with h = A X_i."""
    xu, xi = model.user_embedding.weight.detach(), model.item_embedding.weight.detach()
    users, items_cf = dense_lightgcn(train_dataset, xu, xi)
    with torch.no_grad():
        h = dense_item_graph(model) @ xi
    items = items_cf + h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return users, items, h


# ------------------------------------------------------------------------------ model factory
@pytest.fixture
def make_model(synthetic, tmp_path):
    def make(dims=None, **overrides):
        name = synthetic("tiny", n_users=40, n_items=30, n_clusters=4, per_user=(4, 7), seed=0, dims=dims)
        config_dict = run_config(tmp_path, device="cpu", use_gpu=False, knn_k=4, seed=7, **overrides)
        _, model, trainer, data = build("LATTICE", name, config_dict=config_dict)
        return model, trainer, data

    return make


def set_modal_weight(model, values):
    with torch.no_grad():
        model.modal_weight.copy_(torch.tensor(values))


# ------------------------------------------------------------------------------ defaults, look-ups
def test_found_by_name_with_reference_defaults(make_model):
    assert get_model("LATTICE") is LATTICE
    assert get_trainer(None, "LATTICE") is LATTICETrainer
    model, trainer, _ = make_model()
    assert isinstance(trainer, LATTICETrainer)
    config = trainer.config
    assert config["embedding_size"] == 64 and config["weight_size"] == [64, 64] and config["cf_model"] == "lightgcn"
    assert config["lambda_coeff"] == 0.9 and config["n_item_layers"] == 1 and config["knn_norm"] == "sym"
    assert config["reg_weight"] == 1e-5 and config["learning_rate"] == 5e-4 and config["ui_norm"] == "rw"
    assert model.knn_k == 4  # overridden here; the yaml default is the reference's 10
    assert config["loss_ratio"] is None  # no contrastive term
    # w initialised to 0.5 for every modality: equal weights α
    assert torch.equal(model.modal_weight.detach(), torch.full((2,), 0.5))
    torch.testing.assert_close(model.modality_weights().detach(), torch.full((2,), 0.5))
    assert model.loss_names == ("bpr", "emb")


def test_yaml_default_knn_k_is_reference(synthetic, tmp_path):
    name = synthetic("tiny", n_users=40, n_items=30, n_clusters=4, per_user=(4, 7), seed=0)
    config, model, _, _ = build("LATTICE", name, config_dict=run_config(tmp_path, device="cpu", use_gpu=False))
    assert config["knn_k"] == 10 and model.knn_k == 10


# ------------------------------------------------------------------------------ formulas
@pytest.mark.parametrize("dims", [None, {"image": 12, "text": 8, "audio": 5}], ids=["2-modalities", "3-modalities"])
def test_item_graph_equals_dense_formula(make_model, dims):
    model, _, (train_data, _, _) = make_model(dims=dims)
    M = len(model.modalities)
    set_modal_weight(model, [0.3, -0.4, 1.1][:M])  # unequal α: every α_m must be applied where it belongs
    with torch.no_grad():
        adj = model.learned_adj()
    assert adj.is_sparse and adj.shape == (31, 31)
    torch.testing.assert_close(adj.to_dense(), dense_item_graph(model).detach(), atol=1e-6, rtol=0)
    # [PAD] has no edges; every real item has at most M·k out-edges (kNN lists may overlap)
    dense = adj.to_dense()
    assert (dense[0] == 0).all() and (dense[:, 0] == 0).all()
    assert ((dense[1:] != 0).sum(1) <= M * model.knn_k).all()


def test_learned_part_is_normalised_once_after_the_sum(make_model):
    """symnorm(Σ α kNN) differs from Σ α symnorm(kNN) (MICRO-style per-modality normalisation)."""
    model, _, _ = make_model(lambda_coeff=0.0)  # A = learned graph only
    set_modal_weight(model, [0.2, 0.9])
    with torch.no_grad():
        adj = model.learned_adj().to_dense()
        alpha = model.modality_weights()
        per_modality = sum(
            alpha[j] * padded(dense_knn(model.projected_features(m)[1:], model.knn_k, "sym"))
            for j, m in enumerate(model.modalities)
        )
    torch.testing.assert_close(adj, dense_item_graph(model).detach(), atol=1e-6, rtol=0)
    assert (adj - per_modality).abs().max() > 1e-3


def test_forward_scores_and_losses_equal_dense(make_model):
    model, _, (train_data, _, _) = make_model()
    set_modal_weight(model, [0.1, 0.7])
    model.eval()
    with torch.no_grad():
        users, items, h = model.forward()
    ref_users, ref_items, ref_h = dense_forward(model, train_data._dataset)
    torch.testing.assert_close(h, ref_h, atol=TOL, rtol=0)
    torch.testing.assert_close(users, ref_users, atol=TOL, rtol=0)
    torch.testing.assert_close(items, ref_items, atol=TOL, rtol=0)
    # scoring: full sort and pointwise are ⟨u, ĩ⟩
    uids = torch.tensor([1, 5, 17, 40])
    with torch.no_grad():
        scores = model.full_sort_predict(Interaction({"user_id": uids})).view(4, 31)
        pointwise = model.predict(Interaction({"user_id": uids, "item_id": torch.tensor([3, 30, 1, 12])}))
    torch.testing.assert_close(scores, ref_users[uids] @ ref_items.t(), atol=TOL, rtol=0)
    torch.testing.assert_close(pointwise, scores[torch.arange(4), torch.tensor([3, 30, 1, 12])], atol=TOL, rtol=0)

    # loss = BPR + L_emb on the output embeddings, nothing else
    model.train()
    batch = next(iter(train_data))
    losses = model.calculate_loss(batch)
    assert len(losses) == 2
    u = ref_users[batch["user_id"]]
    pos, neg = ref_items[batch["item_id"]], ref_items[batch["neg_item_id"]]
    expected_bpr = -F.logsigmoid((u * pos).sum(1) - (u * neg).sum(1)).mean()
    expected_emb = 1e-5 * 0.5 * (u.pow(2).sum() + pos.pow(2).sum() + neg.pow(2).sum()) / len(batch)
    torch.testing.assert_close(losses[0].detach(), expected_bpr, atol=TOL, rtol=0)
    torch.testing.assert_close(losses[1].detach(), expected_emb, atol=1e-10, rtol=1e-5)


def test_gradients_equal_dense_autograd(make_model):
    """The learned graph carries gradient into the projections, the raw features and w, exactly as the
    dense formula does (top-k picked without gradient, the kept similarities with it)."""
    model, _, (train_data, _, _) = make_model(lambda_coeff=0.5)
    set_modal_weight(model, [0.25, 0.6])
    model.train()
    names = ["modal_weight", "item_embedding.weight"] + [
        f"{part}.{m}.{p}" for m in model.modalities
        for part, p in (("projections", "weight"), ("projections", "bias"), ("features", "weight"))
    ]
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(3)
    target = torch.randn(31, 64, generator=g)

    h = graphs.propagate(model.learned_adj(), params["item_embedding.weight"], 1)  # the model's own path
    got = torch.autograd.grad((h * target).sum(), [params[n] for n in names])

    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    h_ref = dense_item_graph(model, leaves) @ leaves["item_embedding.weight"]
    ref = torch.autograd.grad((h_ref * target).sum(), [leaves[n] for n in names])
    for name, a, b in zip(names, got, ref):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)
        assert b.abs().max() > 1e-6, name  # every one of them is really reached
    # ... and the training loss reaches w and the projections through the learned graph
    model.zero_grad()
    batch = next(iter(train_data))
    sum(model.calculate_loss(batch)).backward()
    for name in ["modal_weight"] + [f"projections.{m}.weight" for m in model.modalities]:
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name


def test_graph_rebuilt_once_per_epoch_and_cached_for_eval(make_model):
    model, _, (train_data, _, _) = make_model()
    batch = next(iter(train_data))
    model.train()
    model.calculate_loss(batch)
    assert model.item_adj.values().requires_grad
    model.calculate_loss(batch)  # later batches of the epoch reuse it, detached
    assert not model.item_adj.values().requires_grad
    model.eval()
    users = Interaction({"user_id": torch.tensor([1, 2])})
    with torch.no_grad():
        s1 = model.full_sort_predict(users)
    assert model.restore_item_e is not None
    model.train()
    model.calculate_loss(batch)
    assert model.restore_item_e is None  # a training step clears the evaluation cache
    model.eval()
    with torch.no_grad():
        s2 = model.full_sort_predict(users)  # recomputed from the same parameters: same scores
    torch.testing.assert_close(s1, s2, atol=1e-6, rtol=0)


def test_mf_backbone(make_model):
    model, _, _ = make_model(cf_model="mf")
    model.eval()
    with torch.no_grad():
        users, items, h = model.forward()
    xi = model.item_embedding.weight.detach()
    torch.testing.assert_close(users, model.user_embedding.weight.detach(), atol=0, rtol=0)
    torch.testing.assert_close(items, xi + h / h.norm(dim=1, keepdim=True).clamp_min(1e-12), atol=TOL, rtol=0)


# ------------------------------------------------------------------------------ end to end
def test_trains_saves_and_reloads(synthetic, tmp_path):
    name = synthetic("small", n_users=60, n_items=50, n_clusters=5, per_user=(5, 9), seed=1)
    config_dict = run_config(tmp_path, device="cpu", use_gpu=False, knn_k=5, epochs=2, eval_step=1)
    result = run_recbole_micro("LATTICE", name, config_dict=config_dict)
    assert result["epochs_run"] == 2
    assert result["best_valid_result"]["recall@20"] > 0.0
    # reloaded from the checkpoint alone: the same weights, so the same metrics, bit for bit ...
    config, model, _, _, valid_data, test_data = load_data_and_model(result["checkpoint"])
    assert isinstance(model, LATTICE)
    trainer = get_trainer(config["MODEL_TYPE"], "LATTICE")(config, model)
    assert trainer.evaluate(test_data, load_best_model=False) == result["test_result"]
    assert trainer.evaluate(valid_data, load_best_model=False) == result["best_valid_result"]
    # ... and the trained ones (w moved off its 0.5 init), scoring unlike a freshly initialised LATTICE
    assert not torch.equal(model.modal_weight.detach(), torch.full((2,), 0.5))
    _, fresh, _, _ = build("LATTICE", name, config_dict=config_dict)
    users = Interaction({"user_id": torch.tensor([1, 2, 3])})
    model.eval()
    fresh.eval()
    with torch.no_grad():
        trained_scores, fresh_scores = model.full_sort_predict(users), fresh.full_sort_predict(users)
    assert (trained_scores - fresh_scores).abs().max() > 1e-3
