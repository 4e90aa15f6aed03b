"""MICRO's whole loss against dense autograd (``dense_reference.dense_micro``, written from
``../shared/design/micro.md`` §1–7): every loss term and every parameter's gradient, through the learned
graphs (top-k under no_grad, kept cosines with gradient, normalisation, λ-mix), the item-graph
convolution, the attention fusion, the contrastive term and the CF backbone, in float64 on a tiny
dataset, for n_item_layers 1/2 × knn_norm sym/rw × 2/3 modalities × cf_model lightgcn/ngcf/mf."""

import pytest
import torch

from conftest import run_config, train_on_synthetic
from dense_reference import dense_micro
from recbole_micro.model.micro import MICRO
from recbole_micro.quick_start import build

TERMS = ("bpr", "emb", "cl")
DIMS = {2: {"image": 6, "text": 5}, 3: {"image": 6, "text": 5, "audio": 4}}
# parameters the contrastive term cannot reach: it is a function of H_m = A_m^L X_i and h only
NOT_REACHED = {"cl": ("user_embedding.", "backbone.")}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Config and training data of one tiny generated dataset (30 users, 18 items) per number of modalities."""
    def build_tiny(root):
        config_dict = run_config(root, device="cpu", use_gpu=False, seed=11, knn_k=3, embedding_size=8,
                                 weight_size=[8, 8], lambda_coeff=0.6, ngcf_dropout=0.0, train_batch_size=32)
        config, _, _, (train_data, _, _) = build("MICRO", "syn", config_dict=config_dict)
        return config, train_data

    return {n: train_on_synthetic(tmp_path_factory, f"grad{n}", dict(n_users=30, n_items=18, n_clusters=3,
                                                                     per_user=(3, 6), dims=dims, seed=4), build_tiny)[1]
            for n, dims in DIMS.items()}


def micro_in_float64(built, **keys):
    """A MICRO built with ``keys`` set in the resolved config, cast to float64 (the keys are restored after)."""
    config, train_data = built
    old = {k: config[k] for k in keys}
    try:
        for k, v in keys.items():
            config[k] = v
        torch.manual_seed(5)
        model = MICRO(config, train_data._dataset).double()
        return dict(config.final_config_dict), model, train_data
    finally:
        for k, v in old.items():
            config[k] = v


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
    names = sorted(params)
    assert all(p.dtype == torch.float64 for p in params.values())
    losses = dict(zip(TERMS, model.calculate_loss(batch)))  # first batch of an epoch: graph with gradient

    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    raw = {m: x.double() for m, x in dataset.modality_features.items()}
    ref = dense_micro(config, dataset, leaves, raw, batch={k: batch[k] for k in ("user_id", "item_id", "neg_item_id")})

    for term in TERMS:
        torch.testing.assert_close(losses[term].detach(), ref[term].detach(), atol=1e-12, rtol=1e-6, msg=term)
        got = torch.autograd.grad(losses[term], [params[n] for n in names], retain_graph=True, allow_unused=True)
        want = torch.autograd.grad(ref[term], [leaves[n] for n in names], retain_graph=True, allow_unused=True)
        for name, a, b in zip(names, got, want):
            a = torch.zeros_like(params[name]) if a is None else a
            b = torch.zeros_like(params[name]) if b is None else b
            scale = b.abs().max().item()
            torch.testing.assert_close(a, b, atol=1e-6 * max(scale, 1e-6), rtol=1e-5, msg=f"{term} / {name}")
            reached = not any(name.startswith(p) for p in NOT_REACHED.get(term, ()))
            assert (scale > 0) == reached, f"{term} / {name}: gradient {'missing' if reached else 'unexpected'}"
    assert losses["cl"].item() > 0 and losses["bpr"].item() > 0
