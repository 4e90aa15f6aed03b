"""Multi-process (DDP, gloo on the CPU) training is equivalent to one process.

What is exact and what is not:

* DDP averages the ranks' gradients. Two ranks with half a batch each give the full batch's gradient
  exactly when every loss term is a mean over the batch (L_BPR; L_emb divides by the local batch size)
  or does not depend on the batch (MICRO's full contrastive term over all items): checked in one
  process, to 1e-12 in float64. (The ``sampled`` contrastive mode draws one sample per rank: its
  average over ranks is another estimate, not the one-process one.)
* Every rank applies the same averaged gradient to the same (broadcast) parameters: after a real
  2-process run (``quick_start.run(nproc=2)``) the ranks' parameters are identical, bit for bit.
* The merged evaluation equals a one-process evaluation of the same checkpoint up to RecBole's rounding
  to ``metric_decimal_place`` (4) decimals: each rank's mean is rounded (≤ 5e-5), the merged mean is
  rounded again (≤ 5e-5) and so is the one-process value (≤ 5e-5): at most 1.5e-4 apart.
* The 2-process TRAINING trajectory is not the 1-process one: each rank draws its negatives from its own
  stream (seed + rank) for its half of the batch (RecBole's ``DistributedSampler``), so the runs differ
  as two draws of the negative sampling do. Measured on this data (6 epochs, the 1-process run with 8
  negative-sampling streams and the same initialisation): test Recall@20 std 0.016 (range 0.05),
  NDCG@20 std 0.0066 (range 0.022). The tolerance is 4 std.
"""

import functools
import os
import socket

import pytest
import torch

from conftest import run_config, train_on_synthetic
from recbole_micro.quick_start import build, load_data_and_model, run, run_recbole_micro
from recbole_micro.utils import get_trainer

DATA = dict(n_users=60, n_items=80, n_clusters=4, per_user=(5, 8), seed=1, dims={"image": 12, "text": 8})
# one batch per epoch (train_batch_size > #interactions), validated every epoch
TRAIN = dict(knn_k=4, epochs=6, eval_step=1, train_batch_size=4096, learning_rate=0.01, seed=123)
TOLERANCE = {"recall@20": 4 * 0.016, "ndcg@20": 4 * 0.0066}  # 4 std of the negative-sampling noise (above)
MERGE_ROUNDING = 1.5e-4 + 1e-9  # three roundings to 4 decimals (see the module docstring)


def gloo_available():
    return torch.distributed.is_available() and torch.distributed.is_gloo_available()


def free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return str(s.getsockname()[1])


# ------------------------------------------------------------------------------ the loss is a batch mean
@pytest.mark.parametrize("name", ["MICRO", "LATTICE"])
def test_half_batch_gradients_average_to_the_full_batch_gradient(synthetic, tmp_path, name):
    dataset_name = synthetic("half", **{**DATA, "n_users": 30, "n_items": 24})
    _, model, _, (train_data, _, _) = build(name, dataset_name, config_dict=run_config(
        tmp_path, device="cpu", use_gpu=False, **{**TRAIN, "knn_k": 3}))
    model = model.double()
    batch = next(iter(train_data))
    size = len(batch) - len(batch) % 2
    params = [p for _, p in sorted(model.named_parameters()) if p.requires_grad]

    def gradient(rows):
        model.train()  # every rank's step rebuilds the learned graph with gradient, as its first batch of an epoch
        loss = sum(model.calculate_loss(batch[rows]))
        return torch.autograd.grad(loss, params)

    full = gradient(torch.arange(size))
    first, second = gradient(torch.arange(size // 2)), gradient(torch.arange(size // 2, size))
    for p, g, a, b in zip(params, full, first, second):
        torch.testing.assert_close((a + b) / 2, g, atol=1e-12, rtol=1e-10)
    assert all(g.abs().max() > 0 for g in full)


# ------------------------------------------------------------------------------ a real 2-process run
def record_parameters_then_run(out_dir, rank, *args):
    """In each spawned process: the product's own worker (``quick_start._run_worker``, what ``run`` spawns),
    with this rank's parameters saved when training ends (before the test evaluation reloads the best)."""
    from recbole_micro import quick_start
    from recbole_micro.trainer import SafeCheckpointMixin

    fit = SafeCheckpointMixin.fit

    def recording_fit(self, *fit_args, **fit_kwargs):
        out = fit(self, *fit_args, **fit_kwargs)
        state = {n: t.detach().clone() for n, t in self.model.state_dict().items()}
        torch.save(state, os.path.join(out_dir, f"rank{rank}.pt"))
        return out

    SafeCheckpointMixin.fit = recording_fit
    quick_start._run_worker(rank, *args)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same data, seed and config trained in one process and in two (``quick_start.run(nproc=2)``,
    every rank's final parameters recorded); ``(root, one-process result, 2-process result, rank states)``."""
    if not gloo_available():
        pytest.skip("this torch build has no gloo backend")
    from recbole_micro import quick_start

    def train(root):
        single = run_recbole_micro("MICRO", "syn", config_dict=run_config(root, checkpoint_dir=str(root / "one"), **TRAIN))
        out_dir = root / "ranks"
        out_dir.mkdir()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(quick_start, "_run_worker", functools.partial(record_parameters_then_run, str(out_dir)))
            config = run_config(root, checkpoint_dir=str(root / "two"), **TRAIN)
            try:
                double = run("MICRO", "syn", config_dict=config, nproc=2, port=free_port())
            except Exception as error:  # noqa: BLE001 - a sandbox may forbid the local TCP rendezvous
                if "Address already in use" in str(error) or "Connection refused" in str(error):
                    pytest.skip(f"gloo could not start here: {error}")
                raise
        return single, double, [torch.load(out_dir / f"rank{r}.pt") for r in (0, 1)]

    root, (single, double, ranks) = train_on_synthetic(tmp_path_factory, "ddp", DATA, train)
    return root, single, double, ranks


def test_ranks_end_with_identical_parameters(runs):
    root, _, double, (rank0, rank1) = runs
    assert double is not None and double["epochs_run"] == TRAIN["epochs"]
    assert rank0.keys() == rank1.keys() and len(rank0) > 5
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    _, fresh, _, _ = build("MICRO", "syn", config_dict=run_config(root, **TRAIN))  # the same initialisation
    assert not torch.equal(rank0["item_embedding.weight"], fresh.item_embedding.weight.detach())  # trained


def test_merged_evaluation_equals_one_process_evaluation_of_the_checkpoint(runs):
    root, _, double, _ = runs
    _, _, trainer, (_, _, test_data) = build("MICRO", "syn", config_dict=run_config(root, **TRAIN))
    in_process = trainer.evaluate(test_data, model_file=double["checkpoint"])
    assert set(in_process) == set(double["test_result"]) and len(in_process) == 8
    for key, value in in_process.items():
        assert double["test_result"][key] == pytest.approx(value, abs=MERGE_ROUNDING), key


def test_two_process_training_is_a_draw_of_the_one_process_training(runs):
    _, single, double, _ = runs
    for key, tolerance in TOLERANCE.items():
        assert double["test_result"][key] == pytest.approx(single["test_result"][key], abs=tolerance), key
    assert double["best_valid_result"]["recall@20"] > 0.3  # far above chance (20 of 80 items: 0.25)


def test_checkpoint_of_a_two_process_run_reloads_in_one_process(runs):
    _, _, double, _ = runs
    config, model, _, _, _, test_data = load_data_and_model(double["checkpoint"])
    result = get_trainer(config["MODEL_TYPE"], "MICRO")(config, model).evaluate(test_data, load_best_model=False)
    for key, value in result.items():
        assert double["test_result"][key] == pytest.approx(value, abs=MERGE_ROUNDING), key
