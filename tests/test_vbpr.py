"""VBPR (He & McAuley, AAAI 2016; ``recbole_micro/model/vbpr.py``): the loss and every gradient against a
dense float64 reference written from the formulas, for every switch (``item_bias``, ``reg_norm``) and 2 or 3
modalities; cold-start items ranked from their features (and at chance once the visual term is removed);
the configuration (authors' defaults, grid, bad values); comparison and tuning runs."""

import pytest
import torch

from conftest import run_config
from tiny_builds import DIMS, TINY, construction_error, in_float64, tiny_builds
from recbole_micro.errors import ConfigError
from recbole_micro.model.vbpr import VBPR
from recbole_micro.quick_start import build
from recbole_micro.tools.space import find_params_file, read_hyper_file



@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Config and training data of one tiny generated dataset (30 users, 18 items) per number of modalities."""
    return tiny_builds(tmp_path_factory, "VBPR", train_batch_size=32)


def vbpr_in_float64(built, **keys):
    """``in_float64`` of a VBPR with its biases made non-zero (they start at zero), so that every gradient path
    is exercised."""
    config, model, train_data = in_float64(VBPR, built, **keys)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().max() == 0:
                p.normal_(0, 0.3)
    return config, model, train_data


def dense_vbpr(config, params, raw_features, batch):
    r"""VBPR from its formulas and the resolved CONFIG: f_i = [E_m1 | E_m2 | ...], x̂_ui = γ_uᵀγ_i + θ_uᵀ(E f_i + b)
    (+ β_i + β'ᵀf_i with item_bias); L_BPR = −mean log σ(x̂_ui − x̂_uj); R on u = [γ_u; θ_u], i = [γ_i; E f_i + b]
    (and β_i): Σ‖·‖_F / B (frobenius) or Σ‖·‖²_F / B (squared)."""
    f = torch.cat(list(raw_features.values()), dim=1)
    d = config["embedding_size"]
    gamma_u, theta_u = params["user_embedding"][:, :d], params["user_embedding"][:, d:]
    visual = f @ params["projection.weight"].t() + params["projection.bias"]
    gamma_i = params["item_embedding"]
    u, i, j = batch["user_id"], batch["item_id"], batch["neg_item_id"]

    def score(items):
        s = (gamma_u[u] * gamma_i[items]).sum(1) + (theta_u[u] * visual[items]).sum(1)
        if config["item_bias"]:
            s = s + params["bias"][items] + f[items] @ params["visual_bias.weight"][0]
        return s

    bpr = -torch.log(torch.sigmoid(score(i) - score(j))).mean()
    parts = [params["user_embedding"][u], torch.cat([gamma_i[i], visual[i]], 1), torch.cat([gamma_i[j], visual[j]], 1)]
    if config["item_bias"]:
        parts += [params["bias"][i], params["bias"][j]]
    if config["reg_norm"] == "squared":
        reg = sum((p ** 2).sum() for p in parts) / len(u)
    else:
        reg = sum(torch.sqrt((p ** 2).sum()) for p in parts) / len(u)
    return bpr, config["reg_weight"] * reg


@pytest.mark.parametrize("item_bias", [False, True])
@pytest.mark.parametrize("reg_norm", ["frobenius", "squared"])
@pytest.mark.parametrize("n_modalities", [2, 3])
def test_loss_and_every_gradient_equal_dense_autograd(built, item_bias, reg_norm, n_modalities):
    config, model, train_data = vbpr_in_float64(built[n_modalities], item_bias=item_bias, reg_norm=reg_norm,
                                                reg_weight=0.1)
    batch = next(iter(train_data))
    params = dict(model.named_parameters())
    names = sorted(params)
    assert ("bias" in params) == item_bias and all(p.dtype == torch.float64 for p in params.values())
    assert not any(n.startswith("item_features") for n in names)  # the features are fixed
    losses = model.calculate_loss(batch)

    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    raw = {m: x.double() for m, x in train_data._dataset.modality_features.items()}
    ref = dense_vbpr(config, leaves, raw, {k: batch[k] for k in ("user_id", "item_id", "neg_item_id")})
    for term, got_loss, want_loss in zip(VBPR.loss_names, losses, ref):
        torch.testing.assert_close(got_loss.detach(), want_loss.detach(), atol=1e-12, rtol=1e-9, msg=term)
        got = torch.autograd.grad(got_loss, [params[n] for n in names], retain_graph=True, allow_unused=True)
        want = torch.autograd.grad(want_loss, [leaves[n] for n in names], retain_graph=True, allow_unused=True)
        for name, a, b in zip(names, got, want):
            a = torch.zeros_like(params[name]) if a is None else a
            b = torch.zeros_like(params[name]) if b is None else b
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-7, msg=f"{term} / {name}")
        if term == "bpr":  # the visual part is trained by the ranking loss
            assert got[names.index("projection.weight")].abs().max() > 0


@pytest.mark.parametrize("item_bias", [False, True])
def test_scores_are_the_paper_formula_and_predict_equals_full_sort(built, item_bias):
    config, model, train_data = vbpr_in_float64(built[2], item_bias=item_bias)
    model.eval()
    f = torch.cat([x.double() for x in train_data._dataset.modality_features.values()], 1)
    d = config["embedding_size"]
    g_u, t_u = model.user_embedding[:, :d], model.user_embedding[:, d:]
    want = g_u @ model.item_embedding.t() + t_u @ (f @ model.projection.weight.t() + model.projection.bias).t()
    if item_bias:
        want = want + (model.bias + f @ model.visual_bias.weight[0])[None, :]
    from recbole.data.interaction import Interaction

    users = torch.arange(1, model.n_users)
    with torch.no_grad():
        full = model.full_sort_predict(Interaction({"user_id": users})).view(len(users), -1)
        pairs = model.predict(Interaction({"user_id": users.repeat_interleave(model.n_items),
                                           "item_id": torch.arange(model.n_items).repeat(len(users))}))
    torch.testing.assert_close(full, want[1:].detach(), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(pairs.view(len(users), -1), full, atol=1e-12, rtol=1e-9)
    # the cache is plain tensors, never registered as parameters (VBPR's user factors ARE its user embeddings)
    assert model.restore_user_e is not None and not isinstance(model.restore_user_e, torch.nn.Parameter)
    assert not any(k.startswith("restore_") for k in model.state_dict())
    # a training step clears the cached evaluation embeddings
    model.train()
    model.calculate_loss(next(iter(train_data)))
    assert model.restore_user_e is None and model.restore_item_e is None


def test_features_stay_fixed_and_the_dataset_untouched(built):
    config, train_data = built[2]
    dataset = train_data._dataset
    before = {m: x.clone() for m, x in dataset.modality_features.items()}
    torch.manual_seed(0)
    model = VBPR(config, dataset)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    features = model.item_features.clone()
    for batch in train_data:
        optimizer.zero_grad()
        sum(model.calculate_loss(batch)).backward()
        optimizer.step()
    assert torch.equal(model.item_features, features)
    assert torch.equal(features, torch.cat([before[m] for m in model.modalities], dim=1))
    assert all(torch.equal(dataset.modality_features[m], before[m]) for m in before)
    assert "item_features" not in model.state_dict()  # rebuilt from the data at load time


# ------------------------------------------------------------------------------ what the visual term buys
@pytest.fixture(scope="module")
def cold_runs(tmp_path_factory):
    """VBPR on a generated cold-start dataset (119 of 300 items never trained on), trained as shipped and with
    its visual term removed (every item's features zeroed: E f_i + b is the same for all items)."""
    from recbole_micro.data.coldstart import cold_start_dataset
    from test_coldstart import generated_splits

    root = tmp_path_factory.mktemp("vbpr-cold")
    splits, features = generated_splits()
    _, cold = cold_start_dataset(str(root), "cold", splits, features, fraction=0.4, seed=1)

    def fit(ablate):
        config = run_config(root, device="cpu", use_gpu=False, learning_rate=0.01, train_batch_size=512,
                            epochs=20, eval_step=5)
        _, model, trainer, (train_data, valid_data, test_data) = build("VBPR", "cold", config_dict=config, quiet=True)
        if ablate:
            model.item_features.zero_()
        trainer.fit(train_data, valid_data, saved=False, verbose=False)
        return trainer.evaluate(test_data, load_best_model=False)["recall@20"]

    return 20 / len(cold["test"]), fit(False), fit(True)


def test_visual_term_ranks_cold_items_and_without_it_vbpr_is_at_chance(cold_runs):
    chance, vbpr, without_visual = cold_runs  # measured: chance 0.339, VBPR 0.917, without 0.358
    assert vbpr > 0.8 and vbpr > without_visual + 0.4
    assert without_visual < chance + 0.1


# ------------------------------------------------------------------------------ configuration
def test_defaults_are_the_authors_and_the_grid_theirs(built):
    config, train_data = built[2]
    assert config["train_sampler"] == "interaction" and config["train_batch_size"] == 32  # 2048 before the override
    assert config["reg_norm"] == "frobenius" and config["item_bias"] is False and config["learning_rate"] == 0.001
    negatives = config["train_neg_sample_args"]
    assert negatives["distribution"] == "uniform" and negatives["sample_num"] == 1
    assert "neg_item_id" in next(iter(train_data))
    grid = read_hyper_file(find_params_file("VBPR"))["choice"]
    assert grid == {"reg_weight": [2.0, 1.0, 0.1, 0.01, 0.001, 0.0001, 0.00001]}


@pytest.mark.parametrize("key, value, message", [
    ("reg_norm", "l2", "config key 'reg_norm' is 'l2'; it must be one of ['frobenius', 'squared']"),
    ("item_bias", "yes", "config key 'item_bias' is 'yes'; it must be True or False"),
    ("reg_weight", -1.0, "config key 'reg_weight' is -1.0; it must be a number >= 0"),
    ("embedding_size", 0, "config key 'embedding_size' is 0; it must be an integer > 0"),
])
def test_bad_values_are_one_clear_line(built, key, value, message):
    assert construction_error(VBPR, built[2], **{key: value}) == message


def test_a_misspelt_key_is_refused(tmp_path, synthetic):
    name = synthetic("syn", **TINY, dims=DIMS[2])
    with pytest.raises(ConfigError, match="'reg_norn' is not a known key of VBPR \\(did you mean 'reg_norm'\\?\\)"):
        build("VBPR", name, config_dict=run_config(tmp_path, device="cpu", use_gpu=False, reg_norn="squared"))


@pytest.mark.parametrize("model, typo, key", [("VBPR", "item_bais", "item_bias"), ("BM3", "cl_weigth", "cl_weight")])
def test_shipped_spaces_and_keys_are_known_to_the_checks(tmp_path, synthetic, model, typo, key):
    """The shipped grids of VBPR and BM3 search keys their resolved configs have, accepted as they are; a
    one-letter typo of one of their own keys is refused by the unknown-key check."""
    from recbole_micro.tools.space import check_space
    from recbole_micro.tools.values import known_keys, resolve_config

    name = synthetic("syn", **TINY, dims=DIMS[2])
    spec = read_hyper_file(find_params_file(model))
    config = resolve_config(model, name, None, run_config(tmp_path))
    assert set(spec["choice"]) <= set(config.final_config_dict)
    # the authors' training set-up (MMRec overall.yaml): Adam 1e-3, 2048 per step, every interaction per epoch
    setup = (config["learning_rate"], config["train_batch_size"], config["train_sampler"])
    assert setup == (0.001, 2048, "interaction")
    assert config["embedding_size"] == 64
    assert check_space(spec, known_keys(config), model) == spec
    with pytest.raises(ConfigError, match=f"'{typo}' is not a known key of {model} \\(did you mean '{key}'\\?\\)"):
        build(model, name, config_dict=run_config(tmp_path, device="cpu", use_gpu=False, **{typo: 1}))
