"""Scale: the blockwise contrastive loss (exact and sampled), frozen features and bounded graph memory
(multi-process training: ``tests/test_ddp.py``; ``benchmarks/`` measures the speed; ``tests/test_graphs.py`` checks the chunked
graph steps against dense ones)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from recbole_micro.model import losses
from recbole_micro.model.losses import contrastive_loss, contrastive_loss_autograd, sample_negatives

from conftest import REPO, run_config


def _pair(n, d, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)


def _loss_and_grads(fn, base1, base2, *args):
    z1, z2 = base1.clone().requires_grad_(True), base2.clone().requires_grad_(True)
    loss = fn(z1, z2, *args)
    (3.0 * loss).backward()  # a non-unit incoming gradient
    return loss.detach(), z1.grad, z2.grad


# ------------------------------------------------------------------------------ exact (full) loss
@pytest.mark.parametrize("n, chunk", [(50, 1), (50, 7), (257, 64), (257, 4096), (1000, 300)])
def test_fast_contrastive_loss_equals_autograd(n, chunk):
    base1, base2 = _pair(n, 16, seed=n)
    loss, g1, g2 = _loss_and_grads(contrastive_loss, base1, base2, 0.5, chunk)
    ref, r1, r2 = _loss_and_grads(contrastive_loss_autograd, base1, base2, 0.5, 4096)
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(g1, r1, rtol=0, atol=1e-5)
    torch.testing.assert_close(g2, r2, rtol=0, atol=1e-5)
    assert r1.abs().max() > 1e-4 and r2.abs().max() > 1e-4


def test_fast_contrastive_loss_float64_and_blocks(monkeypatch):
    """In float64 the two agree to rounding, also when the cache-sized blocks split the chunks."""
    monkeypatch.setattr(losses, "BLOCK_ELEMENTS", 1000)
    monkeypatch.setattr(losses, "MIN_BLOCK_ROWS", 3)
    assert losses.block_rows(4096, 2 * 101) == 4  # 1000 // 202
    base1, base2 = _pair(101, 8, seed=3, dtype=torch.float64)
    loss, g1, g2 = _loss_and_grads(contrastive_loss, base1, base2, 0.2, 4096)
    ref, r1, r2 = _loss_and_grads(contrastive_loss_autograd, base1, base2, 0.2, 4096)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(g1, r1, rtol=0, atol=1e-12)
    torch.testing.assert_close(g2, r2, rtol=0, atol=1e-12)


def test_fast_contrastive_loss_without_grad_and_through_a_graph():
    base1, base2 = _pair(40, 8, seed=1)
    with torch.no_grad():
        value = contrastive_loss(base1, base2, 0.5, 16)
    torch.testing.assert_close(value, contrastive_loss_autograd(base1, base2, 0.5), rtol=1e-6, atol=0)
    # inputs produced by other operations, the same tensor on both sides of another loss
    w = torch.randn(8, 8, requires_grad=True)
    w_ref = w.detach().clone().requires_grad_(True)
    (contrastive_loss(base1 @ w, base2 @ w, 0.5, 16) + contrastive_loss(base1 @ w, base1 @ w)).backward()
    ref = contrastive_loss_autograd(base1 @ w_ref, base2 @ w_ref, 0.5)
    (ref + contrastive_loss_autograd(base1 @ w_ref, base1 @ w_ref)).backward()
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------ sampled loss
@pytest.mark.parametrize("chunk", [7, 4096])
def test_sampled_loss_with_every_item_is_the_full_loss(chunk):
    base1, base2 = _pair(60, 8, seed=5)
    everything = torch.arange(60)
    full = _loss_and_grads(contrastive_loss, base1, base2, 0.5, chunk)
    sampled = _loss_and_grads(contrastive_loss, base1, base2, 0.5, chunk, everything)
    for a, b in zip(full, sampled):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # in another order the sums are reordered only
    shuffled = _loss_and_grads(contrastive_loss, base1, base2, 0.5, chunk, torch.randperm(60))
    ref = _loss_and_grads(contrastive_loss_autograd, base1, base2, 0.5)
    for a, b in zip(shuffled, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert torch.equal(sample_negatives(60, 60), everything) and torch.equal(sample_negatives(60, 500), everything)


def test_sampled_loss_matches_its_formula():
    r"""ℓ_i = log(e^{p_i} + r_i Σ_{j∈S∖{i}} (e^{s¹_ij} + e^{s²_ij})) − p_i with r_i = (N−1)/|S∖{i}|."""
    n, tau = 30, 0.5
    base1, base2 = _pair(n, 8, seed=9)
    sample = torch.tensor([3, 17, 4, 29, 0, 11])
    loss, g1, g2 = _loss_and_grads(contrastive_loss, base1, base2, tau, 4, sample)

    def direct(z1, z2):
        z1, z2 = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
        positive = (z1 * z2).sum(1) / tau
        terms = torch.exp(z1 @ z1[sample].t() / tau) + torch.exp(z1 @ z2[sample].t() / tau)
        own = torch.arange(n)[:, None] == sample[None, :]
        kept = (~own).sum(1).to(terms.dtype)
        denominator = positive.exp() + (n - 1) / kept * (terms * ~own).sum(1)
        return (denominator.log() - positive).mean()

    ref, r1, r2 = _loss_and_grads(direct, base1, base2)
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(g1, r1, rtol=0, atol=1e-6)
    torch.testing.assert_close(g2, r2, rtol=0, atol=1e-6)
    torch.manual_seed(0)
    drawn = sample_negatives(1000, 64)
    assert drawn.shape == (64,) and drawn.unique().numel() == 64 and 0 <= drawn.min() and drawn.max() < 1000


@pytest.mark.parametrize("chunk", [5, 4096])
def test_population_reweighting_matches_its_formula(chunk):
    r"""z1, z2 a sample of M rows from P: ℓ_i = log(e^{p_i} + r Σ_{j≠i} (e^{s¹_ij} + e^{s²_ij})) − p_i, r = (P−1)/(M−1)
    (MICRO's ``sampled`` mode), also across blocks."""
    m, population, tau = 25, 400, 0.5
    base1, base2 = _pair(m, 8, seed=11)
    loss, g1, g2 = _loss_and_grads(contrastive_loss, base1, base2, tau, chunk, None, population)

    def direct(z1, z2):
        z1, z2 = torch.nn.functional.normalize(z1, dim=1), torch.nn.functional.normalize(z2, dim=1)
        positive = (z1 * z2).sum(1) / tau
        other = ~torch.eye(m, dtype=torch.bool)
        terms = (torch.exp(z1 @ z1.t() / tau) + torch.exp(z1 @ z2.t() / tau)) * other
        return (torch.log(positive.exp() + (population - 1) / (m - 1) * terms.sum(1)) - positive).mean()

    ref, r1, r2 = _loss_and_grads(direct, base1, base2)
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=0)
    torch.testing.assert_close(g1, r1, rtol=0, atol=1e-6)
    torch.testing.assert_close(g2, r2, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------ MICRO with the switches
def _micro(synthetic, tmp_path, **overrides):
    from recbole_micro.quick_start import build

    name = synthetic("scale", n_users=40, n_items=30, n_clusters=4, per_user=(4, 7), seed=0)
    config_dict = run_config(tmp_path, device="cpu", use_gpu=False, knn_k=4, seed=7, **overrides)
    config, model, trainer, (train_data, _, _) = build("MICRO", name, config_dict=config_dict)
    model.train()
    return model, trainer, next(iter(train_data))


def test_micro_sampled_mode_covering_every_item_equals_full(synthetic, tmp_path):
    full, _, batch = _micro(synthetic, tmp_path)
    sampled, _, _ = _micro(synthetic, tmp_path, contrastive_mode="sampled", contrastive_samples=10_000)
    assert (full.contrastive_mode, sampled.contrastive_mode) == ("full", "sampled")
    for a, b in zip(full.calculate_loss(batch), sampled.calculate_loss(batch)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    few, _, _ = _micro(synthetic, tmp_path, contrastive_mode="sampled", contrastive_samples=8)
    loss_cl = few.calculate_loss(batch)[2]
    assert torch.isfinite(loss_cl) and loss_cl > 0
    loss_cl.backward()
    assert all(few.projections[m].weight.grad.abs().sum() > 0 for m in few.modalities)


def test_bad_contrastive_mode_is_refused(synthetic, tmp_path):
    from recbole_micro.errors import ConfigError

    with pytest.raises(ConfigError, match="contrastive_mode"):
        _micro(synthetic, tmp_path, contrastive_mode="approx")


def test_frozen_features_are_not_trained(synthetic, tmp_path):
    model, trainer, batch = _micro(synthetic, tmp_path, freeze_features=True)
    frozen = [model.features[m].weight for m in model.modalities]
    before = [w.detach().clone() for w in frozen]
    assert all(not w.requires_grad for w in frozen)
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    assert not trained & {id(w) for w in frozen}
    trainer.optimizer.zero_grad()
    sum(model.calculate_loss(batch)).backward()
    trainer.optimizer.step()
    # no gradient, no optimiser state (Adam's two N × d_m moments are never allocated), unchanged values
    assert all(w.grad is None and w not in trainer.optimizer.state for w in frozen)
    assert all(torch.equal(w, b) for w, b in zip(frozen, before))
    assert all(model.projections[m].weight in trainer.optimizer.state for m in model.modalities)
    trainable, _, _ = _micro(synthetic, tmp_path)
    assert all(trainable.features[m].weight.requires_grad for m in trainable.modalities)


# ------------------------------------------------------------------------------ graph memory
GRAPH_MEMORY = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    from recbole_micro.model import graphs
    torch.set_num_threads(1)
    n, d = int(sys.argv[1]), int(sys.argv[2])
    x = torch.randn(n, d)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    adj = graphs.knn_graph(x, 10, "sym", 256)
    seconds = time.perf_counter() - start
    if sys.argv[3] == "learned":  # the learned graph: gradient through kNN values, mixing and propagation
        w = torch.randn(d, d, requires_grad=True)
        ego = torch.randn(n, 8, requires_grad=True)
        learned = graphs.mix_graphs(graphs.knn_graph(x @ w, 10, "sym", 256, with_grad=True), adj, 0.9)
        graphs.propagate(learned, ego, 2).pow(2).sum().backward()
        assert w.grad.abs().sum() > 0 and ego.grad.abs().sum() > 0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_bytes": (after - before) * 1024, "nnz": adj._nnz(), "seconds": seconds}))
    """
)


@pytest.mark.parametrize("step", ["original", "learned"])
def test_knn_graph_of_20k_items_stays_far_below_a_dense_matrix(step):
    """Peak RSS growth while building a 20k-item kNN graph (and, for the learned graph, back-propagating
    through it), measured in a fresh process (torch's CPU allocations are invisible to tracemalloc): a
    dense 20k × 20k float32 matrix alone is 1.6 GB — what ``torch.sparse.mm``'s own backward allocates."""
    n = 20_000
    out = subprocess.run([sys.executable, "-c", GRAPH_MEMORY, str(n), "16", step], capture_output=True, text=True,
                         timeout=120, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr
    measured = json.loads(out.stdout.strip().splitlines()[-1])
    dense = n * n * 4
    assert measured["nnz"] == n * 10
    assert measured["growth_bytes"] < dense / 4, measured  # < 400 MB (measured ≈ 130 / 170 MB)
