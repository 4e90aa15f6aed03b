"""LGMRec (Guo et al., AAAI 2024) on tiny generated data, every piece against dense float64 formulas written
from the paper and the authors' code (``recbole_micro/model/lgmrec.py`` docstring): the collaborative and
modality graph embeddings, the hyperedge dependencies (Gumbel-softmax, dropout), the hypergraph message
passing, the fused embeddings, the three loss terms (BPR, hypergraph contrastive, norm regulariser) and
every parameter's gradient; each switch; end to end through RecBole's trainer, where the hypergraph's own
parameters are trained and removing the hypergraph changes the trained model and its rankings.

The random parts are recorded while the model runs (``Recorder``: the Gumbel noise of every
``F.gumbel_softmax`` call and the dropout masks) and replayed by the dense reference.
"""

import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from recbole.data.interaction import Interaction

from conftest import REPO, run_config, train_on_synthetic
from dense_reference import dense_normalise
from tiny_builds import assert_gradients_close, in_float64, tiny_builds
from recbole_micro.checkpoint import load_checkpoint
from recbole_micro.errors import ConfigError
from recbole_micro.model.lgmrec import LGMRec
from recbole_micro.model.losses import LogSumExpScores, candidate_infonce
from recbole_micro.quick_start import build, run_recbole_micro
from recbole_micro.utils import get_model

DIMS = {1: {"image": 6}, 2: {"image": 6, "text": 5}, 3: {"image": 6, "text": 5, "audio": 4}}
TERMS = ("bpr", "hcl", "reg")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``{n_modalities: (config, train_data)}`` of one tiny generated dataset (30 users, 18 items)."""
    return tiny_builds(tmp_path_factory, "LGMRec", dims=DIMS, hyper_num=3, cl_weight=0.05, reg_weight=0.01, train_batch_size=32)


lgmrec_in_float64 = functools.partial(in_float64, LGMRec)


class Recorder:
    """Stands in for ``F.gumbel_softmax`` and the model's dropout: draws as they do, keeps every draw."""

    def __init__(self, keep_rate):
        self.noise, self.masks, self.keep_rate = [], [], keep_rate

    def gumbel_softmax(self, logits, tau=1.0, hard=False, dim=-1):
        assert not hard
        g = -torch.empty_like(logits).exponential_().log()  # Gumbel(0, 1), as torch draws it
        self.noise.append(g)
        return torch.softmax((logits + g) / tau, dim=dim)

    def dropout(self, x):
        mask = (torch.rand_like(x) < self.keep_rate).to(x.dtype)
        self.masks.append(mask)
        return x * mask / self.keep_rate


class RecordedDropout(nn.Module):
    def __init__(self, recorder):
        super().__init__()
        self.recorder = recorder

    def forward(self, x):
        return self.recorder.dropout(x) if self.training else x


# ------------------------------------------------------------------------------ dense reference
def dense_infonce(anchor, positive, candidates, tau):
    """The authors' form: −Σ log(exp(c(a, p)/τ) / Σ_j exp(c(a, z_j)/τ)), cosine c."""
    a, p, z = (F.normalize(t, dim=1) for t in (anchor, positive, candidates))
    return -torch.log(torch.exp((a * p).sum(1) / tau) / torch.exp(a @ z.t() / tau).sum(1)).sum()


def dense_lgmrec(config, model, params, dataset, batch, recorder, training=True):
    """Users, items and losses from the formulas; ``recorder``'s noise and masks replayed in draw order."""
    n_users, n_items = model.n_users, model.n_items
    r = torch.zeros(n_users, n_items, dtype=torch.float64)
    r[dataset.inter_feat[dataset.uid_field], dataset.inter_feat[dataset.iid_field]] = 1.0
    a = torch.zeros(n_users + n_items, n_users + n_items, dtype=torch.float64)
    a[:n_users, n_users:], a[n_users:, :n_users] = r, r.t()
    a_hat = dense_normalise(a, "sym")
    degree = r.sum(1, keepdim=True)
    r_mean = torch.where(degree > 0, r / degree.clamp_min(1), torch.zeros_like(r))
    tau = config["temperature"]

    ego = torch.cat([params["user_embedding.weight"], params["item_embedding.weight"]])
    layers = [ego]
    for _ in range(config["n_ui_layers"] if config["cf_model"] == "lightgcn" else 0):
        layers.append(a_hat @ layers[-1])
    e_c = torch.stack(layers).mean(0)
    local = e_c
    raw = {m: x.double() for m, x in dataset.modality_features.items()}
    for m in model.modalities:
        f_i = raw[m] @ params[f"transforms.{m}"]
        e = torch.cat([r_mean @ f_i, f_i])
        for _ in range(config["n_mm_layers"]):
            e = a_hat @ e
        local = local + e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)

    noise, masks = iter(recorder.noise), iter(recorder.masks)
    hyper = {}
    for m in model.modalities:
        logits_i = torch.cat([torch.zeros(1, config["hyper_num"], dtype=torch.float64),
                              raw[m][1:] @ params[f"hyperedges.{m}"]])
        logits_u = r @ logits_i  # unnormalised interaction matrix: sums of the items' logits
        if noise is not None and recorder.noise:
            h_i = torch.softmax((logits_i + next(noise)) / tau, dim=1)
            h_u = torch.softmax((logits_u + next(noise)) / tau, dim=1)
        else:
            h_i, h_u = torch.softmax(logits_i / tau, dim=1), torch.softmax(logits_u / tau, dim=1)
        h_i = torch.cat([torch.zeros_like(h_i[:1]), h_i[1:]])
        if training and recorder.masks:
            h_u = h_u * next(masks) / recorder.keep_rate
            h_i = h_i * next(masks) / recorder.keep_rate
        x = e_c[n_users:]
        for _ in range(config["n_hyper_layer"]):
            hyperedges = h_i.t() @ x
            x, u = h_i @ hyperedges, h_u @ hyperedges
        hyper[m] = (u, x)
    glob = sum(torch.cat(hyper[m]) for m in model.modalities)
    out = local + config["alpha"] * glob / glob.norm(dim=1, keepdim=True).clamp_min(1e-12)
    users, items = out[:n_users], out[n_users:]
    result = {"users": users, "items": items}
    if batch is not None:
        user, pos, neg = batch["user_id"], batch["item_id"], batch["neg_item_id"]
        u, p, n = users[user], items[pos], items[neg]
        result["bpr"] = -F.logsigmoid((u * p).sum(1) - (u * n).sum(1)).mean()
        hcl = torch.zeros((), dtype=torch.float64)
        for k, ma in enumerate(model.modalities):
            for mb in model.modalities[k + 1:]:
                hcl = hcl + dense_infonce(hyper[ma][0][user], hyper[mb][0][user], hyper[mb][0][1:], tau)
                hcl = hcl + dense_infonce(hyper[ma][1][pos], hyper[mb][1][pos], hyper[mb][1][1:], tau)
        result["hcl"] = config["cl_weight"] * hcl
        if config["reg_norm"] == "squared":
            reg = (u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum()) / u.shape[0]
        else:
            reg = (u.pow(2).sum().sqrt() + p.pow(2).sum().sqrt() + n.pow(2).sum().sqrt()) / u.shape[0]
        result["reg"] = config["reg_weight"] * reg
    return result


def run_recorded(model, batch, keep_rate, monkeypatch):
    recorder = Recorder(keep_rate)
    model.drop = RecordedDropout(recorder)
    monkeypatch.setattr(F, "gumbel_softmax", recorder.gumbel_softmax)
    model.train()
    return dict(zip(TERMS, model.calculate_loss(batch))), recorder


# ------------------------------------------------------------------------------ defaults and errors
def test_found_by_name_with_the_authors_baby_defaults(tmp_path, synthetic):
    name = synthetic("tiny", n_users=30, n_items=18, n_clusters=3, per_user=(3, 6), seed=0)
    config, model, _, _ = build("LGMRec", name, config_dict=run_config(tmp_path, device="cpu", use_gpu=False))
    assert get_model("LGMRec") is LGMRec
    expected = dict(embedding_size=64, cf_model="lightgcn", n_ui_layers=2, n_mm_layers=2, n_hyper_layer=1, hyper_num=4,
                    keep_rate=0.5, alpha=0.3, cl_weight=1e-4, reg_weight=1e-6, temperature=0.2, hyper_eval_noise=True,
                    reg_norm="frobenius", learning_rate=1e-3, train_batch_size=2048, train_sampler="interaction")
    assert {k: config[k] for k in expected} == expected
    assert model.drop.p == pytest.approx(0.5) and model.loss_names == TERMS
    assert not any(p.requires_grad for p in model.features.parameters())  # the raw features are frozen
    assert model.transforms["image"].shape == (32, 64) and model.hyperedges["text"].shape == (16, 4)


@pytest.mark.parametrize("key, value", [("keep_rate", 0.0), ("n_hyper_layer", 0), ("hyper_num", 0),
                                        ("cf_model", "ngcf"), ("reg_norm", "l1"), ("temperature", 0.0), ("alpha", -1),
                                        ("hyper_eval_noise", 1)])
def test_bad_values_are_one_clear_error(built, key, value):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        lgmrec_in_float64(built[2], **{key: value})


# ------------------------------------------------------------------------------ losses and gradients
def test_candidate_infonce_equals_the_authors_exp_log_form():
    g = torch.Generator().manual_seed(3)
    a, p = torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randn(7, 4, generator=g, dtype=torch.float64)
    z = torch.cat([p, torch.randn(5, 4, generator=g, dtype=torch.float64)])
    leaves = [t.clone().requires_grad_(True) for t in (a, p, z)]
    got = candidate_infonce(*leaves, 0.2)
    ref_leaves = [t.clone().requires_grad_(True) for t in (a, p, z)]
    want = dense_infonce(*ref_leaves, 0.2)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    for x, y in zip(torch.autograd.grad(got, leaves), torch.autograd.grad(want, ref_leaves)):
        torch.testing.assert_close(x, y, atol=1e-12, rtol=1e-10)
    big = candidate_infonce(a * 1e3, p, z, 1e-3)  # logsumexp: no overflow where exp(1/τ) would
    assert torch.isfinite(big)


def test_the_in_place_denominator_equals_plain_autograd_and_survives_a_second_backward():
    r"""``LogSumExpScores`` (scores exponentiated, then weighted, in place) gives the plain autograd form
    log(exp(a zᵀ).sum(1)): the value to the bit in float32, both gradients within float32 rounding (their
    products sum in another order, and whether that order matches depends on the CPU's kernels: bit-equal on
    AVX-512, not on AVX2); differentiating a retained graph twice gives the same gradients twice, to the bit
    (the second pass recomputes the scores the first one overwrote)."""
    g = torch.Generator().manual_seed(11)
    a, z = torch.randn(33, 8, generator=g) / 3, torch.randn(50, 8, generator=g) / 3
    weights = torch.rand(33, generator=g)  # a non-uniform upstream gradient
    leaves = [t.clone().requires_grad_(True) for t in (a, z)]
    got = LogSumExpScores.apply(*leaves)
    ref_leaves = [t.clone().requires_grad_(True) for t in (a, z)]
    want = (ref_leaves[0] @ ref_leaves[1].t()).exp().sum(1).log()
    assert torch.equal(got, want)
    first = torch.autograd.grad((got * weights).sum(), leaves, retain_graph=True)
    second = torch.autograd.grad((got * weights).sum(), leaves)
    for x, y, w in zip(first, second, torch.autograd.grad((want * weights).sum(), ref_leaves)):
        assert torch.equal(x, y)
        torch.testing.assert_close(x, w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("temperature", [0.2, 0.02, 0.005])  # float32: exp / log form twice, then logsumexp
def test_candidate_infonce_in_float32_equals_float64_on_either_side_of_the_overflow_bound(temperature):
    r"""The exp / log denominator is used only while |candidates|·e^{1/τ} fits float32 (τ = 0.2 and 0.02 here);
    τ = 0.005 (e^{200}) takes logsumexp. Value and gradients match the float64 dense form on both sides."""
    g = torch.Generator().manual_seed(5)
    a, p = torch.randn(6, 8, generator=g, dtype=torch.float64), torch.randn(6, 8, generator=g, dtype=torch.float64)
    z = torch.cat([p, torch.randn(9, 8, generator=g, dtype=torch.float64)])
    leaves = [t.float().requires_grad_(True) for t in (a, p, z)]
    got = candidate_infonce(*leaves, temperature)
    ref_leaves = [t.clone().requires_grad_(True) for t in (a, p, z)]
    want = candidate_infonce(*ref_leaves, temperature)  # float64: the exp / log form at each of these τ
    assert torch.isfinite(got)
    torch.testing.assert_close(got.double(), want, rtol=2e-5, atol=1e-4)
    for x, y in zip(torch.autograd.grad(got, leaves), torch.autograd.grad(want, ref_leaves)):
        torch.testing.assert_close(x.double(), y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_modalities", [1, 2, 3])
@pytest.mark.parametrize("layers", [dict(n_ui_layers=2, n_mm_layers=2, n_hyper_layer=1),
                                    dict(n_ui_layers=1, n_mm_layers=0, n_hyper_layer=2)], ids=["authors", "other"])
@pytest.mark.parametrize("switches", [dict(keep_rate=0.5), dict(keep_rate=1.0, reg_norm="squared", cf_model="mf",
                                                                   alpha=0.7, temperature=0.5)], ids=["code", "switched"])
def test_loss_and_every_gradient_equal_dense_autograd(built, monkeypatch, n_modalities, layers, switches):
    config, model, train_data = lgmrec_in_float64(built[n_modalities], **layers, **switches)
    batch = next(iter(train_data))
    losses, recorder = run_recorded(model, batch, config["keep_rate"], monkeypatch)
    assert len(recorder.noise) == 2 * n_modalities and len(recorder.masks) == 2 * n_modalities
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}  # the raw features are frozen
    leaves = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    ref = dense_lgmrec(config, model, leaves, train_data._dataset,
                       {k: batch[k] for k in ("user_id", "item_id", "neg_item_id")}, recorder)
    for term in TERMS:
        torch.testing.assert_close(losses[term].detach(), ref[term].detach(), atol=1e-12, rtol=1e-6, msg=term)
        if term == "hcl" and n_modalities == 1:
            assert losses[term].item() == 0.0 and not losses[term].requires_grad  # no modality pair
            continue
        assert_gradients_close(losses[term], ref[term], params, leaves, term)
    if n_modalities > 1:
        assert losses["hcl"].item() > 0
        hyper_grads = torch.autograd.grad(losses["hcl"], [params["hyperedges.image"]], retain_graph=True)
        assert hyper_grads[0].abs().max() > 0  # the contrastive term trains the hyperedges V_m


def test_cf_model_mf_is_the_ego_embeddings(built):
    _, mf, _ = lgmrec_in_float64(built[2], cf_model="mf")
    _, zero_layers, _ = lgmrec_in_float64(built[2], n_ui_layers=0)
    ego = torch.cat([mf.user_embedding.weight, mf.item_embedding.weight])
    torch.testing.assert_close(mf.collaborative_embeddings(), ego, atol=0, rtol=0)
    torch.testing.assert_close(zero_layers.collaborative_embeddings(), ego, atol=0, rtol=0)


# ------------------------------------------------------------------------------ evaluation
def test_hyper_eval_noise_switch(built, monkeypatch):
    r"""True (the code): each scoring draws Gumbel noise, so two evaluations differ; False: the noiseless
    softmax(H/τ), equal to the dense formula and the same every time. No dropout at evaluation either way."""
    _, noisy, _ = lgmrec_in_float64(built[2])
    noisy.eval()
    first = [t.clone() for t in noisy.eval_embeddings()]
    noisy.clear_eval_cache()
    second = noisy.eval_embeddings()
    assert (first[0] - second[0]).abs().max() > 1e-6
    config, clean, train_data = lgmrec_in_float64(built[2], hyper_eval_noise=False)
    clean.eval()
    users, items = clean.eval_embeddings()
    clean.clear_eval_cache()
    assert torch.equal(users, clean.eval_embeddings()[0])
    ref = dense_lgmrec(config, clean, dict(clean.named_parameters()), train_data._dataset, None, Recorder(0.5),
                       training=False)
    torch.testing.assert_close(users, ref["users"].detach(), atol=1e-7, rtol=0)
    torch.testing.assert_close(items, ref["items"].detach(), atol=1e-7, rtol=0)
    scores = clean.full_sort_predict(Interaction({"user_id": torch.tensor([1, 4])})).view(2, -1)
    torch.testing.assert_close(scores, ref["users"][[1, 4]].detach() @ ref["items"].detach().t(), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------ end to end
E2E_DATA = dict(n_users=200, n_items=400, n_clusters=20, per_user=(5, 8), affinity=1.0, seed=2)
E2E_TRAIN = dict(epochs=4, eval_step=2, learning_rate=0.01, hyper_eval_noise=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``{variant: (result, state_dict)}``: LGMRec and LGMRec without its hypergraph (α = 0, λ₁ = 0)."""
    def train(root):
        out = {}
        for name, keys in {"full": {}, "no hypergraph": {"alpha": 0.0, "cl_weight": 0.0}}.items():
            config = run_config(root, checkpoint_dir=str(root / name.replace(" ", "-")), **{**E2E_TRAIN, **keys})
            result = run_recbole_micro("LGMRec", "syn", config_dict=config)
            out[name] = result, load_checkpoint(result["checkpoint"])["state_dict"]
        return out, root

    return train_on_synthetic(tmp_path_factory, "lgmrec-e2e", E2E_DATA, train)[1]


def test_the_hypergraph_is_trained_and_shapes_the_rankings(trained):
    (results, root) = trained
    (full_result, full), (_, ablated) = results["full"], results["no hypergraph"]
    print({name: r["test_result"]["recall@20"] for name, (r, _) in results.items()})
    _, model, _, _ = build("LGMRec", "syn", config_dict=run_config(root, **E2E_TRAIN))  # same seed: the start
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # the hyperedges V_m get a gradient only through the hypergraph: trained in the full model, untouched without it
    for m in ("image", "text"):
        key = f"hyperedges.{m}"
        assert (full[key] - initial[key]).abs().max() > 1e-3, key
        assert torch.equal(ablated[key], initial[key]), key
    moved = (full["item_embedding.weight"] - ablated["item_embedding.weight"]).abs().max()
    assert moved > 1e-3
    # and the global embedding changes the trained model's rankings: scoring it with α = 0 reorders the items
    config, model, _, (_, _, test_data) = build("LGMRec", "syn", config_dict=run_config(root, **E2E_TRAIN))
    model.load_state_dict(full)
    model.eval()
    users = torch.arange(1, 51)
    with torch.no_grad():
        with_global = model.full_sort_predict(Interaction({"user_id": users})).view(50, -1)[:, 1:]
        model.alpha = 0.0
        model.clear_eval_cache()
        without = model.full_sort_predict(Interaction({"user_id": users})).view(50, -1)[:, 1:]
    top_with, top_without = with_global.topk(20).indices, without.topk(20).indices
    overlap = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(top_with, top_without)) / (50 * 20)
    assert overlap < 0.99, overlap  # measured 0.965: 35 of the 1,000 top-20 entries change
    assert 0.0 < full_result["test_result"]["recall@20"] <= 1.0


# ------------------------------------------------------------------------------ the remaining switches
@pytest.mark.parametrize("keep_rate", [0.25, 1.0])
def test_keep_rate_is_the_dropout_of_the_dependencies_in_training_only(built, keep_rate):
    _, model, _ = lgmrec_in_float64(built[2], keep_rate=keep_rate)
    assert model.drop.p == pytest.approx(1.0 - keep_rate)
    model.train()
    torch.manual_seed(0)
    users, items = model.hyperedge_dependencies("image")
    kept = (items[1:] != 0).double().mean().item()
    assert kept == pytest.approx(keep_rate, abs=0.15)
    model.eval()
    users, items = model.hyperedge_dependencies("image")
    torch.testing.assert_close(items[1:].sum(1), torch.ones(model.n_items - 1, dtype=torch.float64))  # rows of a softmax


SWITCH_TESTED = {"embedding_size", "cf_model", "n_ui_layers", "n_mm_layers", "n_hyper_layer", "hyper_num",
                 "keep_rate", "alpha", "cl_weight", "reg_weight", "temperature", "hyper_eval_noise", "reg_norm"}


def test_every_yaml_key_is_tested():
    keys = set(yaml.safe_load((REPO / "properties" / "model" / "LGMRec.yaml").read_text()))
    # RecBole's, the sampler's and untrained_item_ids (tested with every multimodal model in test_coldstart.py)
    assert keys - {"learning_rate", "train_batch_size", "train_sampler", "untrained_item_ids"} == SWITCH_TESTED
