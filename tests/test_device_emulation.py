"""The GPU paths, run on the CPU under an emulated accelerator (``emulated_device.py``).

A tensor left on the wrong device fails here as it fails on CUDA, so the paths a GPU run takes are
checked on every CPU machine: train → reload the best checkpoint → test → per-user values, resume,
``recommend``, the comparison and a tuning with trial checkpoints, for MICRO, LATTICE, BPR and
LightGCN, and train → test → ``recommend`` for VBPR, BM3, FREEDOM and LGMRec. Under emulation every result must equal the plain CPU run's to the bit (the values live on
the CPU either way), so the mode changes where tensors are said to be, never what is computed.
"""

import shutil

import pytest
import torch

from conftest import run_config, train_on_synthetic
from emulated_device import ACCELERATOR, DeviceMismatch, emulated_accelerator, on_device
from recbole_micro import checkpoint as checkpoint_module
from recbole_micro.quick_start import load_data_and_model, run_recbole_micro
from recbole_micro.recommend import recommend
from recbole_micro.tools import compare
from recbole_micro.tools.results import model_runs
from recbole_micro.tools.search import tune_model

SMALL = dict(n_users=40, n_items=50, n_clusters=5, per_user=(6, 10), dims={"image": 12, "text": 6})
MODELS = ["MICRO", "LATTICE", "BPR", "LightGCN", "VBPR", "BM3", "FREEDOM", "LGMRec"]
TRAIN = dict(epochs=3, eval_step=1, stopping_step=10, seed=5)
USERS = ["1", "8", "30"]
PER_USER = ["recall@20", "ndcg@20"]


class Interrupt(Exception):
    pass


def lists(per_user):
    return {key: values.tolist() for key, values in per_user.items()}


def _run(root, model, folder, **kwargs):
    config = run_config(root, checkpoint_dir=str(root / folder), **TRAIN)
    return run_recbole_micro(model, "syn", config_dict=config, per_user=PER_USER, **kwargs)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """Each model trained on the plain CPU: the numbers the emulated GPU runs must reproduce."""
    def train(root):
        return {model: _run(root, model, f"host-{model}") for model in MODELS}

    return train_on_synthetic(tmp_path_factory, "emulated", SMALL, train)


# ------------------------------------------------------------------------------ the emulation itself
def test_the_emulation_applies_cudas_device_checks(tmp_path):
    with emulated_accelerator():
        values = torch.arange(6.0).view(3, 2)
        index = torch.tensor([0, 2]).to(ACCELERATOR)
        assert on_device(index) and index.device == ACCELERATOR and not on_device(values)
        with pytest.raises(DeviceMismatch, match=r"indices should be either on cpu or on the same device as the "
                                                 r"indexed tensor \(cpu\)"):
            values[index]
        moved = values.to(ACCELERATOR)
        assert moved is not values and not on_device(values)  # .to returns a new tensor, the host one stays
        assert on_device(moved[torch.tensor([0, 2])])  # host indices into a device tensor: allowed, as on CUDA
        with pytest.raises(DeviceMismatch, match="Expected all tensors to be on the same device"):
            moved + values
        with pytest.raises(DeviceMismatch, match="Expected all tensors to be on the same device"):
            torch.nn.functional.embedding(torch.tensor([1]), moved)
        assert on_device(moved * torch.tensor(2.0))  # a 0-dim host tensor is a scalar
        grid = torch.zeros(2, 3).to(ACCELERATOR)  # index_put_ as CUDA's: indices on the host or self's device
        grid.index_put_((torch.tensor([0, 1]), torch.tensor([2, 0]).to(ACCELERATOR)), torch.ones(2).to(ACCELERATOR))
        assert on_device(grid) and grid.cpu().sum().item() == 2.0
        with pytest.raises(DeviceMismatch, match="indices should be either on cpu or on the same device"):
            torch.zeros(2, 3).index_put_((torch.tensor([0]).to(ACCELERATOR),), torch.ones(3))
        with pytest.raises(DeviceMismatch, match=r"found at least two devices, meta and cpu! \(in index_put_\)"):
            grid.index_put_((torch.tensor([0]),), torch.ones(3))  # the values must be on self's device
        with pytest.raises(TypeError, match="can't convert cuda:0 device type tensor to numpy"):
            moved.numpy()
        assert moved.cpu().numpy().tolist() == values.numpy().tolist() and not on_device(moved.cpu())
        assert on_device(torch.zeros(2, device=index.device)) and on_device(moved.sum(0))
        layer = torch.nn.Linear(2, 2).to(ACCELERATOR)
        assert all(on_device(p) for p in layer.parameters()) and on_device(layer(moved))
        graph = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 2]]), torch.ones(2), (3, 3)).to(ACCELERATOR)
        assert on_device(torch.sparse.mm(graph, moved))
        torch.save({"w": layer.weight}, tmp_path / "w.pth")  # the values are saved, as a GPU run saves them
        loaded = torch.load(tmp_path / "w.pth", map_location="cpu", weights_only=True)["w"]
        assert not on_device(loaded) and torch.equal(loaded, layer.weight.detach().cpu())
    assert torch.zeros(1).device.type == "cpu"  # nothing outlives the block


@pytest.mark.parametrize("model", ["MICRO", "LightGCN"])
def test_a_checkpoint_cache_left_on_the_host_fails_as_on_a_gpu(host, model, monkeypatch):
    """Issue 21: the evaluation cache of a checkpoint read onto the CPU, put back into a GPU model as it
    was (main before the fix), crashes the first ``full_sort_predict`` with CUDA's message."""
    _, runs = host
    with emulated_accelerator():
        _, net, _, _, _, test_data = load_data_and_model(runs[model]["checkpoint"])
        batch = next(iter(test_data))[0].to(ACCELERATOR)
        scores = net.full_sort_predict(batch)
        assert on_device(scores) and on_device(net.restore_user_e)
        monkeypatch.setattr(checkpoint_module, "other_parameters_for", lambda net, saved: saved)  # as before
        _, stale, _, _, _, _ = load_data_and_model(runs[model]["checkpoint"])
        assert not on_device(stale.restore_user_e)
        with pytest.raises(DeviceMismatch, match="indices should be either on cpu or on the same device"):
            stale.full_sort_predict(batch)
    assert torch.equal(scores.cpu(), load_data_and_model(runs[model]["checkpoint"])[1].full_sort_predict(batch.cpu()))


# ------------------------------------------------------------------------------ the paths of a GPU run
@pytest.mark.parametrize("model", MODELS)
def test_a_gpu_run_reaches_its_test_and_recommends_as_on_the_cpu(host, model):
    root, runs = host
    with emulated_accelerator():
        result = _run(root, model, f"gpu-{model}")
        recommended = recommend(result["checkpoint"], USERS, topk=5)
    expected = runs[model]
    assert result["test_result"] == expected["test_result"] and result["best_valid_result"] == expected["best_valid_result"]
    assert lists(result["per_user"]) == lists(expected["per_user"]) and result["best_epoch"] == expected["best_epoch"]
    assert recommended == recommend(expected["checkpoint"], USERS, topk=5)
    with emulated_accelerator():  # the CPU run's checkpoint on the GPU
        assert recommend(expected["checkpoint"], USERS, topk=5) == recommended


def test_an_interrupted_gpu_run_resumes_to_the_cpu_result(host):
    root, runs = host

    def stop(epoch_idx, valid_score):
        if epoch_idx == 1:
            raise Interrupt

    with emulated_accelerator():
        with pytest.raises(Interrupt):
            _run(root, "MICRO", "gpu-cut", callback_fn=stop)
        last = next(str(p) for p in (root / "gpu-cut").iterdir() if p.name.endswith("-last.pth"))
        resumed = _run(root, "MICRO", "gpu-cut", resume=last)
    assert resumed["test_result"] == runs["MICRO"]["test_result"]
    assert lists(resumed["per_user"]) == lists(runs["MICRO"]["per_user"])


def test_comparison_and_tuning_on_a_gpu_equal_the_cpu(host, tmp_path):
    root, _ = host
    overrides = run_config(root, checkpoint_dir=str(tmp_path / "saved"), eval_step=1)
    grid = tmp_path / "lr.hyper"
    grid.write_text("learning_rate choice [0.001, 0.01]\n")

    def both():
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        doc = compare.run_comparison("syn", "BPR,LATTICE", epochs=2, overrides=overrides, out=str(tmp_path / "out"),
                                     command="run_compare.py")
        export = tune_model("LightGCN", "syn", str(grid), "exhaustive", output_file=str(tmp_path / "tune"),
                            overrides={**overrides, "epochs": 2})
        runs = {m: [(r["status"], r["valid"], r["test"]) for r in model_runs(doc, m)] for m in ("BPR", "LATTICE")}
        trials = [(t["params"], t["valid"], t["test"]) for t in export["trials"]]
        per_user = sorted(p.name for p in (tmp_path / "out" / "syn-per-user").iterdir())
        return runs, trials, per_user

    host_numbers = both()
    with emulated_accelerator():
        gpu_numbers = both()
    assert [r[0][0] for r in gpu_numbers[0].values()] == ["ok", "ok"] and len(gpu_numbers[1]) == 2
    assert gpu_numbers == host_numbers and len(gpu_numbers[2]) == 2
