"""Training as the reference code trains, each difference one switch away: the optimiser's zero-grad
semantics (``zero_grad_set_to_none``), the initialisation (``init_scheme``), the test mask
(``test_mask_valid``), and model features copied out of the dataset."""

import math

import pytest
import torch
import torch.nn as nn
from recbole.data import data_preparation
from recbole.utils import init_seed

from conftest import run_config
from recbole_micro.config import Config
from recbole_micro.errors import ConfigError
from recbole_micro.model.lattice import LATTICE
from recbole_micro.model.micro import MICRO
from recbole_micro.quick_start import build
from recbole_micro.utils import create_dataset, get_trainer

SMALL = dict(n_users=60, n_items=80, n_clusters=5, per_user=(5, 10), dims={"image": 24, "text": 12}, seed=5)


@pytest.fixture
def syn(synthetic):
    return synthetic("ref", **SMALL)


def make(tmp_path, name, model="MICRO", **overrides):
    config = run_config(tmp_path, **{"knn_k": 5, "train_batch_size": 32, "epochs": 1, **overrides})
    return build(model, name, config_dict=config, quiet=True)


def test_defaults_are_the_reference_protocol(tmp_path, syn):
    config, model, trainer, (train_data, _, _) = make(tmp_path, syn)
    assert config["train_sampler"] == "user" and config["zero_grad_set_to_none"] is False
    assert config["init_scheme"] == "reference" and config["test_mask_valid"] is True  # RecBole's test mask stays


# ------------------------------------------------------------------------------ zero_grad semantics
def _projection_per_step(tmp_path, name, set_to_none):
    """One MICRO epoch through the plugin's trainer: (weight, grad) of a projection after every step."""
    _, model, trainer, (train_data, _, _) = make(tmp_path, name, zero_grad_set_to_none=set_to_none)
    weight = model.projections["image"].weight
    steps = []
    trainer.optimizer.register_step_post_hook(
        lambda *_: steps.append((weight.detach().clone(), None if weight.grad is None else weight.grad.clone())))
    trainer._train_epoch(train_data, 0)
    assert len(steps) == len(train_data) >= 3
    return steps


def test_zero_grad_false_keeps_adam_moving_parameters_without_gradient(tmp_path, syn):
    """The learned graph is built with gradient on an epoch's first batch only: the projections get no
    gradient afterwards. torch 1.5 (the reference): zeroed gradients, Adam moves them on momentum."""
    steps = _projection_per_step(tmp_path, syn, set_to_none=False)
    assert steps[0][1].abs().sum() > 0  # step 1: a real gradient
    for (before, _), (after, grad) in zip(steps, steps[1:]):
        assert grad is not None and torch.count_nonzero(grad) == 0  # a zero tensor, not None
        assert not torch.equal(before, after)  # still moving


def test_zero_grad_true_freezes_them_after_the_first_step(tmp_path, syn):
    steps = _projection_per_step(tmp_path, syn, set_to_none=True)
    assert steps[0][1].abs().sum() > 0
    for (before, _), (after, grad) in zip(steps, steps[1:]):
        assert grad is None and torch.equal(before, after)  # Adam skips a parameter whose gradient is None


@pytest.mark.parametrize("model", ["BPR", "LightGCN", "LATTICE"])
def test_every_models_trainer_zeroes_in_place_by_default(tmp_path, syn, model):
    for set_to_none in (False, True):
        _, net, trainer, (train_data, _, _) = make(tmp_path, syn, model=model, zero_grad_set_to_none=set_to_none)
        trainer.optimizer.zero_grad()
        assert all(p.grad is None for p in net.parameters())  # as torch 1.5: a missing gradient stays missing
        trainer._train_epoch(train_data, 0)
        trainer.optimizer.zero_grad()
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        if set_to_none:
            assert all(g is None for g in grads)
        else:
            assert all(g is not None and torch.count_nonzero(g) == 0 for g in grads)


def test_bad_zero_grad_value_is_refused(tmp_path, syn):
    with pytest.raises(ConfigError, match="config key 'zero_grad_set_to_none' is 'yes'"):
        make(tmp_path, syn, model="BPR", zero_grad_set_to_none="yes")


# ------------------------------------------------------------------------------ initialisation
def _linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _check_uniform(weight, bound):
    w = weight.detach()
    assert w.abs().max() <= bound + 1e-7
    assert w.abs().max() >= 0.8 * bound  # fills its range
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.15 * bound / math.sqrt(3)


@pytest.mark.parametrize("model_class, cf_model", [(MICRO, "lightgcn"), (MICRO, "ngcf"), (LATTICE, "ngcf")])
def test_reference_initialisation(tmp_path, syn, model_class, cf_model):
    _, model, _, (train_data, _, _) = make(tmp_path, syn, model=model_class.__name__, cf_model=cf_model)
    for embedding in (model.user_embedding.weight, model.item_embedding.weight):  # xavier-uniform
        n, d = embedding.shape
        _check_uniform(embedding, math.sqrt(6.0 / (n + d)))
    linears = _linears(model)
    # projections, MICRO's attention query, NGCF's two weights per layer: PyTorch's default nn.Linear init
    expected = len(model.modalities) + (2 if model_class is MICRO else 0) + (4 if cf_model == "ngcf" else 0)
    assert len(linears) == expected
    for linear in linears:
        bound = 1.0 / math.sqrt(linear.in_features)  # kaiming-uniform(a=√5) weights, U(±1/√fan_in) biases
        _check_uniform(linear.weight, bound)
        if linear.bias is not None:
            assert torch.count_nonzero(linear.bias) == linear.out_features and linear.bias.abs().max() <= bound
    # raw features stay as loaded
    for m in model.modalities:
        assert torch.equal(model.features[m].weight, train_data._dataset.modality_features[m])


def test_xavier_initialisation_switch(tmp_path, syn):
    _, model, _, _ = make(tmp_path, syn, cf_model="ngcf", init_scheme="xavier")
    for linear in _linears(model):
        assert linear.weight.abs().max() <= math.sqrt(6.0 / (linear.in_features + linear.out_features)) + 1e-7
        assert linear.bias is None or torch.count_nonzero(linear.bias) == 0
    with pytest.raises(ConfigError, match="config key 'init_scheme' is 'kaiming'"):
        make(tmp_path, syn, init_scheme="kaiming")


# ------------------------------------------------------------------------------ test mask
def _ranking_trainer(trainer, test_data):
    """What ``trainer.evaluate`` sets before it scores full-sort batches (``_full_sort_batch_eval``)."""
    trainer.model.eval()
    trainer.tot_item_num = test_data._dataset.item_num
    trainer.item_tensor = test_data._dataset.get_item_feature()
    return trainer


def _valid_items_in_test_rankings(tmp_path, name, mask_valid, k=20):
    _, _, trainer, (_, valid_data, test_data) = make(tmp_path, name, model="BPR", test_mask_valid=mask_valid)
    _ranking_trainer(trainer, test_data)
    in_top, masked, users = 0, 0, 0
    train = test_data._dataset  # any split dataset: the same item ids
    with torch.no_grad():
        for batch in test_data:
            interaction, scores, _, _ = trainer._full_sort_batch_eval(batch)
            top = scores.topk(k, dim=1).indices
            for row, uid in enumerate(interaction["user_id"].tolist()):
                valid_items = valid_data.uid2positive_item[uid]
                if valid_items is None:
                    continue
                users += 1
                masked += bool(torch.isinf(scores[row, valid_items]).all())
                in_top += bool(set(valid_items.tolist()) & set(top[row].tolist()))
    assert train.item_num == scores.shape[1] and users > 0
    return in_top, masked, users


def test_test_ranking_masks_valid_items_only_when_asked(tmp_path, syn):
    in_top, masked, users = _valid_items_in_test_rankings(tmp_path, syn, mask_valid=True)
    assert in_top == 0 and masked == users  # RecBole: validation items never ranked in test
    in_top, masked, users = _valid_items_in_test_rankings(tmp_path, syn, mask_valid=False)
    assert masked == 0 and in_top > 0  # the reference: they stay in the ranking and do appear in it


def test_test_ranking_keeps_training_items_masked(tmp_path, syn):
    _, _, trainer, (train_data, _, test_data) = make(tmp_path, syn, model="BPR", test_mask_valid=False)
    _ranking_trainer(trainer, test_data)
    train = train_data._dataset.inter_matrix(form="csr")
    with torch.no_grad():
        for batch in test_data:
            interaction, scores, _, positive_i = trainer._full_sort_batch_eval(batch)
            for row, uid in enumerate(interaction["user_id"].tolist()):
                trained = train.indices[train.indptr[uid]:train.indptr[uid + 1]]
                assert torch.isinf(scores[row, torch.from_numpy(trained).long()]).all()


def test_test_mask_valid_false_needs_a_full_ranking(tmp_path, syn):
    with pytest.raises(ConfigError, match="test_mask_valid: False .* set eval_args.mode to 'full'"):
        make(tmp_path, syn, model="BPR", test_mask_valid=False, eval_args={"mode": "uni100"})


# ------------------------------------------------------------------------------ features copied
def test_models_built_from_one_dataset_start_from_its_features(tmp_path, syn):
    """Training the first model must not write into the dataset's features (a later tuning trial,
    comparison or reload built from the same dataset would start from trained features)."""
    config = Config(model="MICRO", dataset=syn, config_dict=run_config(tmp_path, knn_k=5, train_batch_size=32))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    original = {m: x.clone() for m, x in train_data._dataset.modality_features.items()}
    first = MICRO(config, train_data._dataset)
    get_trainer(config["MODEL_TYPE"], "MICRO")(config, first)._train_epoch(train_data, 0)
    assert all(not torch.equal(first.features[m].weight, x) for m, x in original.items())  # it trained them
    second = MICRO(config, train_data._dataset)
    for m, x in original.items():
        assert torch.equal(train_data._dataset.modality_features[m], x)
        assert torch.equal(second.features[m].weight, x)
        # the original kNN graph of the raw features is the first model's (built before it trained)
        assert torch.equal(second.original_adj[m].to_dense(), first.original_adj[m].to_dense())
