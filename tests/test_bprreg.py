"""BPRReg (``recbole_micro/model/bprreg.py``): RecBole's BPR plus MMRec's batch-embedding regulariser.
The loss and its gradients against a dense float64 reference for both ``reg_norm`` forms; ``reg_weight: 0``
is RecBole's BPR exactly; the regulariser shrinks the trained embeddings; defaults, grid, bad values."""

import pytest
import torch
import torch.nn.functional as F
from recbole.model.general_recommender.bpr import BPR

from conftest import run_config, train_on_synthetic
from tiny_builds import in_float64
from recbole_micro.errors import ConfigError
from recbole_micro.model.bprreg import BPRReg
from recbole_micro.quick_start import build
from recbole_micro.tools.space import find_params_file, read_hyper_file

TINY = dict(n_users=30, n_items=18, n_clusters=3, per_user=(3, 6), seed=4, dims={"image": 6, "text": 5})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Resolved config and training data of one tiny generated dataset (30 users, 18 items)."""
    def build_tiny(root):
        config, _, _, (train_data, _, _) = build("BPRReg", "syn", config_dict=run_config(
            root, device="cpu", use_gpu=False, seed=11, embedding_size=8, train_batch_size=32))
        return config, train_data

    return train_on_synthetic(tmp_path_factory, "bprreg", TINY, build_tiny)[1]


def model_with(built, cls=BPRReg, **keys):
    """``cls`` built with ``keys`` set in the resolved config (restored after), seeded init, float64."""
    return in_float64(cls, built, **keys)[1]


def dense_loss(user_w, item_w, batch, reg_weight, reg_norm):
    r"""From the formulas: −mean log(1e-10 + σ(u·i⁺ − u·i⁻)) + reg_weight · Σ_{M ∈ U, I⁺, I⁻} ‖M‖_F^p / B,
    p = 1 (frobenius) or 2 (squared), written with explicit sums."""
    u, p, n = user_w[batch["user_id"]], item_w[batch["item_id"]], item_w[batch["neg_item_id"]]
    diff = (u * p).sum(1) - (u * n).sum(1)
    bpr = -torch.log(1e-10 + 1 / (1 + torch.exp(-diff))).mean()
    power = 0.5 if reg_norm == "frobenius" else 1.0
    reg = sum((m * m).sum() ** power for m in (u, p, n)) / u.shape[0]
    return bpr + reg_weight * reg


@pytest.mark.parametrize("reg_norm", ["frobenius", "squared"])
@pytest.mark.parametrize("reg_weight", [0.0, 0.1, 2.0])
def test_loss_and_gradients_equal_the_dense_reference(built, reg_norm, reg_weight):
    model = model_with(built, reg_weight=reg_weight, reg_norm=reg_norm)
    batch = next(iter(built[1]))
    loss = model.calculate_loss(batch)
    loss.backward()
    user_w = model.user_embedding.weight.detach().clone().requires_grad_()
    item_w = model.item_embedding.weight.detach().clone().requires_grad_()
    reference = dense_loss(user_w, item_w, batch, reg_weight, reg_norm)
    reference.backward()
    assert torch.allclose(loss, reference, rtol=1e-12, atol=1e-12)
    assert torch.allclose(model.user_embedding.weight.grad, user_w.grad, rtol=1e-10, atol=1e-12)
    assert torch.allclose(model.item_embedding.weight.grad, item_w.grad, rtol=1e-10, atol=1e-12)
    if reg_weight:  # the term is there: it changes the loss
        assert loss.item() > dense_loss(user_w, item_w, batch, 0.0, reg_norm).item() + 1e-6


def test_reg_weight_zero_is_recboles_bpr(built):
    """Same seed, same init (xavier-normal), same loss and gradients as RecBole's BPR, same scores."""
    ours, recbole = model_with(built, reg_weight=0.0), model_with(built, cls=BPR)
    assert torch.equal(ours.user_embedding.weight, recbole.user_embedding.weight)
    batch = next(iter(built[1]))
    a, b = ours.calculate_loss(batch), recbole.calculate_loss(batch)
    a.backward(), b.backward()
    assert a.item() == b.item()
    assert torch.equal(ours.item_embedding.weight.grad, recbole.item_embedding.weight.grad)
    assert torch.equal(ours.full_sort_predict(batch), recbole.full_sort_predict(batch))


def test_the_regulariser_shrinks_the_trained_embeddings(built):
    """30 Adam steps on the same batches: the embeddings the batch touches end smaller with reg_weight 2
    than without (the term does what it is for), and their BPR loss is not the only thing minimised."""
    norms = {}
    for reg_weight in (0.0, 2.0):
        model = model_with(built, reg_weight=reg_weight).float()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        for _ in range(30):
            for batch in built[1]:
                optimizer.zero_grad()
                model.calculate_loss(batch).backward()
                optimizer.step()
        norms[reg_weight] = model.user_embedding.weight.norm().item()
    assert norms[2.0] < 0.8 * norms[0.0]


def test_defaults_are_mmrecs_and_the_grid_theirs(built):
    config, train_data = built
    assert config["train_sampler"] == "interaction" and config["learning_rate"] == 0.001
    assert config["reg_norm"] == "frobenius" and config["reg_weight"] == 0.1 and config["embedding_size"] == 8
    assert config["train_neg_sample_args"]["distribution"] == "uniform" and config["train_neg_sample_args"]["sample_num"] == 1
    assert read_hyper_file(find_params_file("BPRReg"))["choice"] == {
        "reg_weight": [2.0, 1.0, 0.1, 0.01, 0.001, 0.0001, 0.00001]}


@pytest.mark.parametrize("key, value, message", [
    ("reg_norm", "l2", "config key 'reg_norm' is 'l2'; it must be one of ['frobenius', 'squared']"),
    ("reg_weight", -1.0, "config key 'reg_weight' is -1.0; it must be a number >= 0.0"),
])
def test_bad_values_are_one_clear_line(built, key, value, message):
    with pytest.raises(ConfigError) as err:
        model_with(built, **{key: value})
    assert str(err.value) == message
