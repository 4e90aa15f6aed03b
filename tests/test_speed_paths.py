"""The fast paths stay exact and GPU-friendly: the contrastive loss reads nothing back to the host, its
threaded CPU blocks equal the one-thread result and repeat bit for bit, its bf16 switch stays within bf16
tolerance of float32, and the sparse products reuse one cached transpose per graph
(``benchmarks/`` measures the speed itself)."""

import pytest
import torch

from recbole_micro.model import graphs, losses
from recbole_micro.model.losses import contrastive_loss, contrastive_loss_autograd

from conftest import run_config

# operations that copy a device value to the host (a synchronisation on a GPU)
SYNC_OPS = {"aten::nonzero", "aten::_local_scalar_dense", "aten::item", "aten::unique", "aten::masked_select",
            "aten::_unique2", "aten::nonzero_static"}


def _pair(n, d, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)


def _loss_and_grads(fn, base1, base2, *args, **kwargs):
    z1, z2 = base1.clone().requires_grad_(True), base2.clone().requires_grad_(True)
    loss = fn(z1, z2, *args, **kwargs)
    (3.0 * loss).backward()
    return loss.detach(), z1.grad, z2.grad


class HostReads:
    """Counts calls of the tensor methods that read values back to the host, on every thread."""

    NAMES = ("item", "tolist", "nonzero", "__bool__", "__int__", "__float__", "numpy")

    def __init__(self, monkeypatch):
        self.calls = []
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(name, original))
        original_nonzero = torch.nonzero
        monkeypatch.setattr(torch, "nonzero", self._counting("torch.nonzero", original_nonzero))

    def _counting(self, name, original):
        def counted(*args, **kwargs):
            self.calls.append(name)
            return original(*args, **kwargs)

        return counted


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mode", ["full", "population", "negatives"])
def test_contrastive_forward_and_backward_never_read_back_to_the_host(monkeypatch, threads, mode):
    """No ``.item()``/``.tolist()``/``nonzero``/``bool(tensor)`` (patched methods) and no host-reading aten op
    (profiler) in the forward or backward of the loss: on a GPU it runs without a synchronisation."""
    monkeypatch.setattr(losses, "BLOCK_ELEMENTS", 600)  # several blocks (and threads) even at this size
    monkeypatch.setattr(losses, "MIN_BLOCK_ROWS", 4)
    base1, base2 = _pair(80, 8, seed=2)
    kwargs = {"population": 500} if mode == "population" else {}
    if mode == "negatives":
        kwargs = {"negatives": torch.tensor([5, 0, 79, 33, 12, 60])}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        reads = HostReads(monkeypatch)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            z1, z2 = base1.clone().requires_grad_(True), base2.clone().requires_grad_(True)
            loss = contrastive_loss(z1, z2, 0.5, 4096, **kwargs)
            loss.backward()
        monkeypatch.undo()
    finally:
        torch.set_num_threads(previous)
    ops = {event.key for event in prof.key_averages()}
    assert "InfoNCE" in ops and "aten::mm" in ops  # the profiler saw the loss
    assert not ops & SYNC_OPS, ops & SYNC_OPS
    assert reads.calls == []
    assert torch.isfinite(loss) and z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0


@pytest.mark.parametrize("n, negatives", [(257, None), (130, "sampled")])
def test_threaded_blocks_equal_one_thread_and_repeat_bit_for_bit(monkeypatch, n, negatives):
    """With 2 intra-op threads the blocks are split over two Python threads (``losses.run_blocks``): the result
    equals the one-thread result to float rounding, two runs are bitwise equal, and the caller's thread
    count is restored."""
    monkeypatch.setattr(losses, "BLOCK_ELEMENTS", 2000)
    monkeypatch.setattr(losses, "MIN_BLOCK_ROWS", 4)
    base1, base2 = _pair(n, 16, seed=n, dtype=torch.float64)
    sample = None if negatives is None else torch.randperm(n, generator=torch.Generator().manual_seed(1))[:40]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = _loss_and_grads(contrastive_loss, base1, base2, 0.3, 4096, sample)
        torch.set_num_threads(2)
        first = _loss_and_grads(contrastive_loss, base1, base2, 0.3, 4096, sample)
        second = _loss_and_grads(contrastive_loss, base1, base2, 0.3, 4096, sample)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert len(losses.row_blocks(n, losses.block_rows(4096, 2 * (n if sample is None else 40)), 2)) >= 4
    for a, b, c in zip(single, first, second):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        assert torch.equal(b, c)
    if sample is None:  # and the threaded result is the plain-autograd loss
        ref = _loss_and_grads(contrastive_loss_autograd, base1, base2, 0.3)
        for a, b in zip(first, ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_row_blocks_cover_the_rows_in_equal_shares():
    for n, rows, threads in [(7050, 297, 2), (1682, 1246, 2), (10, 3, 1), (5, 64, 2), (1000, 64, 3)]:
        blocks = losses.row_blocks(n, rows, threads)
        assert blocks[0][0] == 0 and blocks[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
        sizes = [end - start for start, end in blocks]
        assert max(sizes) <= rows and max(sizes) - min(sizes) <= max(sizes) // 2 + 1
    assert len(losses.row_blocks(1682, 1246, 2)) == 2  # two equal halves, not 1246 + 436
    assert len(losses.row_blocks(7050, 297, 2)) % 2 == 0


@pytest.mark.parametrize("mode", ["full", "population"])
def test_bf16_precision_is_fp32_within_bf16_tolerance(mode):
    """``precision="bf16"``: blocks and products in bfloat16, sums in float32 — loss and gradients within
    bf16 tolerance of the float32 loss (and not identical to it: the switch does something)."""
    base1, base2 = _pair(300, 32, seed=4)
    kwargs = {"population": 3000} if mode == "population" else {}
    exact = _loss_and_grads(contrastive_loss, base1, base2, 0.5, 64, **kwargs)
    low = _loss_and_grads(contrastive_loss, base1, base2, 0.5, 64, precision="bf16", **kwargs)
    assert low[0].dtype == torch.float32 and low[1].dtype == torch.float32
    torch.testing.assert_close(low[0], exact[0], rtol=5e-3, atol=0)
    for g_low, g_exact in zip(low[1:], exact[1:]):
        scale = g_exact.abs().max()
        assert (g_low - g_exact).abs().max() < 2e-2 * scale
        assert torch.nn.functional.cosine_similarity(g_low.flatten(), g_exact.flatten(), dim=0) > 0.999
    assert not torch.equal(low[0], exact[0])
    with pytest.raises(ValueError, match="precision"):
        contrastive_loss(base1, base2, precision="fp16")


def test_micro_bf16_switch(synthetic, tmp_path):
    """``contrastive_precision: bf16`` in MICRO: the same losses as fp32 within bf16 tolerance; a bad value is one
    ConfigError naming the key."""
    from recbole_micro.errors import ConfigError
    from recbole_micro.quick_start import build

    name = synthetic("precision", n_users=40, n_items=30, n_clusters=4, per_user=(4, 7), seed=0)
    results = {}
    for precision in ("fp32", "bf16"):
        config_dict = run_config(tmp_path, device="cpu", use_gpu=False, knn_k=4, seed=7, contrastive_precision=precision)
        _, model, _, (train_data, _, _) = build("MICRO", name, config_dict=config_dict)
        model.train()
        assert model.contrastive_precision == precision
        results[precision] = model.calculate_loss(next(iter(train_data)))
    for a, b in zip(results["fp32"], results["bf16"]):
        torch.testing.assert_close(b, a, rtol=1e-2, atol=1e-6)
    with pytest.raises(ConfigError, match="contrastive_precision"):
        build("MICRO", name, config_dict=run_config(tmp_path, device="cpu", knn_k=4, contrastive_precision="fp8"))


# ------------------------------------------------------------------------------ sparse products
def _graph(n, nnz, seed):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(0, n, (2, nnz), generator=g)
    return torch.sparse_coo_tensor(index, torch.rand(nnz, generator=g), (n, n)).coalesce()


def test_sparse_mm_equals_dense_and_reuses_one_transpose_per_graph(monkeypatch):
    """A fixed graph: A X and ∂/∂X equal the dense products; the transpose is built once for the graph and
    reused by later steps and by its ``detach()`` copies (what the training batches multiply by)."""
    adj = _graph(50, 300, seed=0)
    dense = adj.to_dense()
    built = []
    original = graphs.transpose_csr
    monkeypatch.setattr(graphs, "transpose_csr", lambda *a: built.append(a) or original(*a))
    for step in range(3):
        x = torch.randn(50, 6, requires_grad=True)
        ref = x.detach().clone().requires_grad_(True)
        graph = adj if step == 0 else adj.detach()
        upstream = torch.randn(50, 6)
        graphs.sparse_mm(graph, x).backward(upstream)
        (dense @ ref).backward(upstream)
        torch.testing.assert_close(graphs.sparse_mm(graph, x.detach()), dense @ x.detach(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(x.grad, ref.grad, rtol=1e-6, atol=1e-6)
    assert len(built) == 1
    # a changed graph (new values) gets its own transpose
    other = torch.sparse_coo_tensor(adj.indices(), adj.values() * 2, adj.shape).coalesce()
    x = torch.randn(50, 6, requires_grad=True)
    graphs.sparse_mm(other, x).sum().backward()
    torch.testing.assert_close(x.grad, (2 * dense).t() @ torch.ones(50, 6), rtol=1e-6, atol=1e-5)
    assert len(built) == 2
    # a rectangular graph (users × items, say)
    wide = torch.sparse_coo_tensor(torch.tensor([[0, 2, 2, 1], [5, 0, 7, 3]]), torch.tensor([1.0, 2.0, 3.0, 4.0]),
                                   (3, 8)).coalesce()
    x = torch.randn(8, 2, requires_grad=True)
    graphs.sparse_mm(wide, x).backward(torch.ones(3, 2))
    torch.testing.assert_close(x.grad, wide.to_dense().t() @ torch.ones(3, 2))


def test_cached_products_of_a_graph_are_freed_with_it():
    """A graph's CSR copies (of A and Aᵀ) are freed with the graph: a tuning search builds a model, so a graph,
    per trial, and the copies of finished trials' graphs must not stay (on a GPU they would fill its memory).
    While the graph lives, its copies are reused; a new graph after it, even in the freed memory, gets its own."""
    import gc
    import weakref

    adj = _graph(80, 500, seed=3)
    csr_t = graphs.transposed_csr(adj)
    assert graphs.transposed_csr(adj) is csr_t and graphs.transposed_csr(adj.detach()) is csr_t
    freed = weakref.ref(csr_t)
    dense = adj.to_dense()
    del adj, csr_t
    gc.collect()
    assert freed() is None
    for seed in range(4, 12):  # new graphs of the same size: a stale entry would give a wrong product
        adj = _graph(80, 500, seed=seed)
        x = torch.randn(80, 3, requires_grad=True)
        graphs.sparse_mm(adj, x).backward(torch.ones(80, 3))
        torch.testing.assert_close(x.grad, adj.to_dense().t() @ torch.ones(80, 3), rtol=1e-6, atol=1e-5)
        assert not torch.equal(adj.to_dense(), dense)
        del adj


def _ops_inside(prof, name):
    """Names of the operations run inside the profiled event ``name`` (its whole call tree)."""
    found, stack = set(), [e for e in prof.events() if e.name == name]
    assert stack, f"{name} did not run"
    while stack:
        event = stack.pop()
        found.add(event.name)
        stack.extend(event.cpu_children)
    return found


@pytest.mark.parametrize("values_grad", [False, True])
def test_sparse_mm_backward_never_coalesces(values_grad):
    """Neither the cached product nor the edge-gradient product (learned graph) coalesces in backward."""
    adj = _graph(60, 400, seed=1)
    values = adj.values().clone().requires_grad_(values_grad)
    graph = torch.sparse_coo_tensor(adj.indices(), values, adj.shape, is_coalesced=True)
    x = torch.randn(60, 4, requires_grad=True)
    y = graphs.sparse_mm(graph, x)
    graphs.sparse_mm(graph.detach(), x).sum().backward()  # first use of the fixed copy: builds its transpose
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        y.pow(2).sum().backward()
    node = "_EdgeSparseMMBackward" if values_grad else "_CachedSparseMMBackward"
    ops = _ops_inside(prof, node)
    assert "aten::_sparse_mm" in ops or "aten::mm" in ops  # the transposed product ran in this node
    assert "aten::_coalesce" not in ops  # (``coalesce`` of a coalesced tensor is a no-op: no ``_coalesce``)
    assert not ops & SYNC_OPS
    if values_grad:
        ref_values = adj.values().clone().requires_grad_(True)
        ref_x = x.detach().clone().requires_grad_(True)
        dense = torch.sparse_coo_tensor(adj.indices(), ref_values, adj.shape).to_dense()
        (dense @ ref_x).pow(2).sum().backward()
        torch.testing.assert_close(values.grad, ref_values.grad, rtol=1e-5, atol=1e-5)
