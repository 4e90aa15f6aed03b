"""BM3 (Zhou et al., WWW 2023; ``recbole_micro/model/bm3.py``): every loss term and every gradient against a
dense float64 reference written from the formulas (LightGCN + residual, shared predictor, stop-gradient
dropout targets, C = 1 − cos), for n_layers 1/2 × reg_norm × dropout 0/0.5 × 2/3 modalities, with the
gradient paths the stop-gradient allows and no others; training on observed pairs only (no negatives);
end to end: the bootstrapped target views are what keeps BM3 from collapsing; the switches and config
errors; VBPR and BM3 through run_compare and run_hyper."""

import json

import functools

import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from conftest import run_config, train_on_synthetic
from dense_reference import dense_interactions, dense_normalise
from tiny_builds import DIMS, TINY, assert_gradients_close, construction_error, in_float64, tiny_builds
from recbole_micro.model.bm3 import BM3
from recbole_micro.quick_start import build
from recbole_micro.tools.space import find_params_file, read_hyper_file

# what each term's gradient reaches: the targets are stop-gradient copies, so the multimodal terms never reach
# the ID embeddings, and the ID terms never reach the features
REACHED = {
    "rec": ("user_embedding.", "item_embedding.", "predictor."),
    "reg": ("user_embedding.", "item_embedding."),
    "multimodal": ("predictor.", "features.", "projections."),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return tiny_builds(tmp_path_factory, "BM3", train_batch_size=40)


bm3_in_float64 = functools.partial(in_float64, BM3)


def dense_bm3(config, dataset, params, batch, seed):
    r"""BM3 from its formulas and the resolved CONFIG. h = mean_l (D^-1/2 A D^-1/2)^l [X_u; X_i], h_i += X_i;
    f_p(x) = x W_pᵀ + b_p; h_m = E_m W_mᵀ + b_m; targets sg(h)·mask/(1−p), one mask per distinct user / item
    (masks drawn after ``torch.manual_seed(seed)``: users, items, then each modality); C = 1 − mean cos;
    R = Σ‖H‖_F (frobenius) or Σ‖H‖²_F (squared) over the real users and items, / (N − 1)."""
    xu, xi = params["user_embedding.weight"], params["item_embedding.weight"]
    n_users, n_items, d = xu.shape[0], xi.shape[0], xu.shape[1]
    adj = dense_normalise(dense_interactions(dataset, n_users, n_items).double(), "sym")
    layers = [torch.cat([xu, xi])]
    for _ in range(config["n_layers"]):
        layers.append(adj @ layers[-1])
    out = torch.stack(layers).mean(0)
    h_u, h_i = out[:n_users], out[n_users:] + xi

    def predictor(x):
        return x @ params["predictor.weight"].t() + params["predictor.bias"]

    def c(a, b):
        return 1 - (a * b).sum(1).div(a.norm(dim=1) * b.norm(dim=1)).mean()

    users, items = batch["user_id"], batch["item_id"]
    uu, ur = torch.unique(users, return_inverse=True)
    ii, ir = torch.unique(items, return_inverse=True)
    torch.manual_seed(seed)
    p = config["dropout"]

    def mask(rows):
        return F.dropout(torch.ones(rows, d, dtype=torch.float64), p, training=True)

    target_u = (h_u[uu].detach() * mask(len(uu)))[ur]
    target_i = (h_i[ii].detach() * mask(len(ii)))[ir]
    rec = c(predictor(h_u[users]), target_i) + c(predictor(h_i[items]), target_u)
    multimodal = 0
    for m in dataset.modality_features:
        w, b = params[f"projections.{m}.weight"], params[f"projections.{m}.bias"]
        h_m = params[f"features.{m}.weight"][ii] @ w.t() + b
        target_m = (h_m.detach() * mask(len(ii)))[ir]
        multimodal = multimodal + c(predictor(h_m[ir]), target_i) + c(predictor(h_m[ir]), target_m)
    parts = (h_u[1:], h_i[1:])
    if config["reg_norm"] == "squared":
        reg = sum((x ** 2).sum() for x in parts) / (n_items - 1)
    else:
        reg = sum(torch.sqrt((x ** 2).sum()) for x in parts) / (n_items - 1)
    return {"rec": rec, "reg": config["reg_weight"] * reg, "multimodal": config["cl_weight"] * multimodal,
            "scores": predictor(h_u) @ predictor(h_i).t()}


@pytest.mark.parametrize("n_modalities", [2, 3])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("reg_norm", ["frobenius", "squared"])
@pytest.mark.parametrize("n_layers", [1, 2])
def test_loss_and_every_gradient_equal_dense_autograd(built, n_layers, reg_norm, dropout, n_modalities):
    config, model, train_data = bm3_in_float64(built[n_modalities], n_layers=n_layers, reg_norm=reg_norm,
                                               dropout=dropout, reg_weight=0.1, cl_weight=2.0)
    dataset = train_data._dataset
    batch = next(iter(train_data))
    assert "neg_item_id" not in batch and len(torch.unique(batch["user_id"])) < len(batch)  # repeated users
    params = dict(model.named_parameters())
    assert {f"features.{m}.weight" for m in dataset.modality_features} <= set(params)  # trained, as the code
    model.train()
    torch.manual_seed(77)
    losses = dict(zip(BM3.loss_names, model.calculate_loss(batch)))

    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    ref = dense_bm3(config, dataset, leaves, {k: batch[k] for k in ("user_id", "item_id")}, seed=77)
    for term in BM3.loss_names:
        torch.testing.assert_close(losses[term].detach(), ref[term].detach(), atol=1e-12, rtol=1e-6, msg=term)
        # the user-item graph is normalised in float32 (then cast): relative 1e-7 differences, within the bound
        scales = assert_gradients_close(losses[term], ref[term], params, leaves, term)
        for name, scale in scales.items():
            reached = name.startswith(REACHED[term])
            problem = "missing" if reached else "unexpected"
            assert (scale > 0) == reached, f"{term} / {name}: gradient {problem}"

    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(Interaction({"user_id": torch.arange(model.n_users)}))
    torch.testing.assert_close(scores.view(model.n_users, -1), ref["scores"].detach(), atol=1e-9, rtol=1e-6)


def test_target_views_are_dropout_of_a_stop_gradient_copy(built):
    _, model, _ = bm3_in_float64(built[2], dropout=0.5)
    x = torch.randn(2000, 8, dtype=torch.float64, requires_grad=True)
    view = model.target_view(x)
    assert not view.requires_grad
    kept = view != 0
    assert 0.45 < kept.double().mean().item() < 0.55  # p = 0.5
    torch.testing.assert_close(view[kept], 2 * x.detach()[kept])  # scaled by 1/(1 − p)
    model.dropout = 0.0
    assert torch.equal(model.target_view(x), x.detach())


def test_training_uses_observed_pairs_once_per_epoch_without_negatives(built):
    config, train_data = built[2]
    assert config["train_neg_sample_args"]["distribution"] == "none" and config["train_sampler"] == "interaction"
    dataset = train_data._dataset
    batches = list(train_data)  # one epoch
    seen = sorted(zip(*(torch.cat([b[f] for b in batches]).tolist() for f in ("user_id", "item_id"))))
    assert seen == sorted(zip(dataset.inter_feat["user_id"].tolist(), dataset.inter_feat["item_id"].tolist()))


def test_the_reference_user_sampler_also_gives_positive_only_batches(tmp_path, synthetic):
    """``train_sampler: user`` (MICRO's reference batches) with BM3: distinct users, one observed item each,
    no negatives (RecBole's loader code with ``train_neg_sample_args: ~``), and a finite loss."""
    from recbole_micro.data.sampler import UserSampleTrainDataLoader

    name = synthetic("syn", **TINY, dims=DIMS[2])
    config, model, _, (train_data, _, _) = build("BM3", name, config_dict=run_config(
        tmp_path, device="cpu", use_gpu=False, train_sampler="user", train_batch_size=16, embedding_size=8))
    assert isinstance(train_data, UserSampleTrainDataLoader)
    dataset = train_data._dataset
    observed = set(zip(dataset.inter_feat["user_id"].tolist(), dataset.inter_feat["item_id"].tolist()))
    batches = list(train_data)
    assert len(batches) == len(dataset) // 16 + 1
    for batch in batches:
        assert set(batch.columns) == {"user_id", "item_id"} and len(batch) == 16
        assert len(set(batch["user_id"].tolist())) == 16
        assert set(zip(batch["user_id"].tolist(), batch["item_id"].tolist())) <= observed
    assert all(torch.isfinite(term) for term in model.calculate_loss(batches[0]))


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_features_switch(built, freeze):
    config, train_data = built[2]
    dataset = train_data._dataset
    before = {m: x.clone() for m, x in dataset.modality_features.items()}
    config["freeze_features"] = freeze
    try:
        torch.manual_seed(0)
        model = BM3(config, dataset)
    finally:
        config["freeze_features"] = False
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    model.train()
    for batch in train_data:
        optimizer.zero_grad()
        sum(model.calculate_loss(batch)).backward()
        optimizer.step()
    changed = [not torch.equal(model.features[m].weight, before[m]) for m in before]
    assert changed == [not freeze] * len(before)
    assert all(torch.equal(dataset.modality_features[m], before[m]) for m in before)  # the data stays as loaded


def test_cl_weight_zero_leaves_the_features_out(built):
    _, model, train_data = bm3_in_float64(built[2], cl_weight=0.0)
    losses = model.calculate_loss(next(iter(train_data)))
    assert losses[2].item() == 0.0
    sum(losses).backward()
    for name, p in model.named_parameters():
        if name.startswith(("features.", "projections.")):
            assert p.grad is None or p.grad.abs().max() == 0, name


# ------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """BM3 on a generated dataset (200 users, 150 items), as shipped and with its bootstrapped target views
    removed (target = the online representation itself: no stop-gradient, no dropout)."""

    def train(root):
        def fit(ablate):
            config = run_config(root, device="cpu", use_gpu=False, learning_rate=0.01, train_batch_size=256,
                                epochs=30, eval_step=5, stopping_step=100)
            _, model, trainer, (train_data, valid_data, test_data) = build("BM3", "syn", config_dict=config, quiet=True)
            if ablate:
                model.target_view = lambda x: x
            trainer.fit(train_data, valid_data, saved=False, verbose=False)
            model.eval()
            with torch.no_grad():
                items = F.normalize(model.scoring_embeddings()[1][1:], dim=1)
            spread = (items @ items.t()).mean().item()  # mean cosine between items: 1 = collapsed
            return trainer.evaluate(test_data, load_best_model=False)["recall@20"], spread

        return fit(False), fit(True)

    return train_on_synthetic(tmp_path_factory, "bm3-e2e", dict(n_users=200, n_items=150, n_clusters=6,
                                                                  per_user=(6, 10), dims={"image": 16, "text": 8},
                                                                  seed=3), train)[1]


def test_without_its_bootstrapped_views_bm3_collapses(trained):
    (bm3, bm3_spread), (ablated, ablated_spread) = trained  # measured: 0.80 vs 0.27
    assert bm3 > 0.7 and bm3 > ablated + 0.3
    assert ablated_spread > 0.9 and bm3_spread < ablated_spread - 0.3


# ------------------------------------------------------------------------------ configuration
def test_defaults_are_the_authors_and_the_grid_theirs(built):
    config, _ = built[2]
    assert (config["n_layers"], config["dropout"], config["reg_weight"], config["cl_weight"]) == (1, 0.5, 0.1, 2.0)
    assert config["learning_rate"] == 0.001 and config["reg_norm"] == "frobenius" and config["freeze_features"] is False
    assert read_hyper_file(find_params_file("BM3"))["choice"] == {
        "n_layers": [1, 2], "dropout": [0.3, 0.5], "reg_weight": [0.1, 0.01]}


@pytest.mark.parametrize("key, value, message", [
    ("dropout", 1.0, "config key 'dropout' is 1.0; it must be a number >= 0.0 and < 1.0"),
    ("n_layers", -1, "config key 'n_layers' is -1; it must be an integer >= 0"),
    ("cl_weight", -2.0, "config key 'cl_weight' is -2.0; it must be a number >= 0.0"),
    ("reg_norm", "l1", "config key 'reg_norm' is 'l1'; it must be one of ['frobenius', 'squared']"),
    ("freeze_features", "no", "config key 'freeze_features' is 'no'; it must be True or False"),
])
def test_bad_values_are_one_clear_line(built, key, value, message):
    assert construction_error(BM3, built[2], **{key: value}) == message


# ------------------------------------------------------------------------------ the tools
def test_compare_and_tune_run_vbpr_and_bm3(tmp_path, synthetic):
    from recbole_micro.tools import compare
    from recbole_micro.tools.search import tune_model

    name = synthetic("syn", n_users=40, n_items=30, n_clusters=3, per_user=(4, 8), dims={"image": 8, "text": 4})
    overrides = run_config(tmp_path, eval_step=1)
    compare.run_comparison(name, "VBPR,BM3", epochs=2, overrides=overrides, out=str(tmp_path / "res"),
                           command="python run_compare.py --dataset syn --models VBPR,BM3 --epochs 2")
    doc = json.loads((tmp_path / "res" / "syn.json").read_text())
    assert doc["order"] == ["VBPR", "BM3"]
    for model in ("VBPR", "BM3"):
        run = doc["runs"][model]["123"]
        assert run["status"] == "ok" and run["epochs_run"] == 2 and 0 <= run["test"]["recall@20"] <= 1
    assert doc["runs"]["BM3"]["123"]["settings"]["train_sampler"] == "interaction"
    page = (tmp_path / "res" / "syn.md").read_text()
    assert "| VBPR |" in page and "| BM3 |" in page

    grid = tmp_path / "grid.hyper"
    grid.write_text("dropout choice [0.3, 0.5]\n")
    export = tune_model("BM3", name, str(grid), "exhaustive", output_file=str(tmp_path / "tune" / "bm3"),
                        overrides=run_config(tmp_path, epochs=1, eval_step=1))
    assert [t["status"] for t in export["trials"]] == ["ok", "ok"]
    assert sorted(t["params"]["dropout"] for t in export["trials"]) == [0.3, 0.5]
