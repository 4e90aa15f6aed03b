"""The GPU path, tested on the CPU by emulation.

* CUDA-tagged checkpoints: written through a ``torch.serialization`` location tagger that labels every
  storage ``cuda:0``, exactly as a GPU run's file is labelled (plain ``torch.load`` on a CPU-only
  machine refuses it); they recommend, reload and resume bit-exactly on the CPU, with RNG and
  optimiser state read onto the CPU whatever the trainer's device;
* a multi-process (DDP) checkpoint reloads in one process;
* ``gpu_id`` of an ``nproc``-process run and ``CUDA_VISIBLE_DEVICES`` set before CUDA is first queried
  (pure functions, and the call order with CUDA queries patched);
* ``deterministic: True`` before CUDA starts; one host–device sync per step for the finite-loss check.
"""

import os
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import run_config, train_on_synthetic
from recbole_micro import checkpoint as checkpoint_module
from recbole_micro import quick_start
from recbole_micro.checkpoint import load_checkpoint, set_rng_state
from recbole_micro.config import Config, check_gpu_count, process_gpu_ids
from recbole_micro.config_data import config_to_data
from recbole_micro.errors import ConfigError
from recbole_micro.quick_start import build, load_data_and_model, run_recbole_micro
from recbole_micro.recommend import recommend
from recbole_micro.trainer import NonFiniteLossError, SafeCheckpointMixin
from recbole_micro.utils import get_trainer

SMALL = dict(n_users=40, n_items=50, n_clusters=5, per_user=(6, 10), dims={"image": 12, "text": 6})
EPOCHS = 4
TRAIN = dict(epochs=EPOCHS, eval_step=1, stopping_step=10, train_batch_size=128, seed=11)
USERS = ["1", "8", "30"]

_AS_CUDA = {"on": False}


def _cuda_tagger(storage):
    return "cuda:0" if _AS_CUDA["on"] else None  # None: torch's own CPU tagger labels it


torch.serialization.register_package(1, _cuda_tagger, lambda storage, location: None)


def save_as_cuda(state, path):
    """``torch.save`` with every storage labelled ``cuda:0`` (what a GPU run writes)."""
    _AS_CUDA["on"] = True
    try:
        torch.save(state, path, pickle_protocol=2)
    finally:
        _AS_CUDA["on"] = False
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"cuda:0" in pickled and b"\x03cpu" not in pickled


def cuda_copy(path, out):
    state = torch.load(path, weights_only=True)
    state["rng"]["cuda"] = [torch.get_rng_state()]  # a GPU run also saves CUDA's generator states
    save_as_cuda(state, out)
    if not torch.cuda.is_available():  # the emulation is real: torch alone cannot read it here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(out, weights_only=True)
    return str(out)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run and the ``-last`` checkpoint of one interrupted after epoch 1."""
    def train(root):
        full = run_recbole_micro("MICRO", "syn", config_dict=run_config(root, checkpoint_dir=str(root / "full"), **TRAIN))

        def stop(epoch_idx, valid_score):
            if epoch_idx == 2:
                raise Interrupt

        with pytest.raises(Interrupt):
            run_recbole_micro("MICRO", "syn", config_dict=run_config(root, checkpoint_dir=str(root / "cut"), **TRAIN),
                              callback_fn=stop)
        last = next(str(p) for p in (root / "cut").iterdir() if p.name.endswith("-last.pth"))
        return full, last

    root, (full, last) = train_on_synthetic(tmp_path_factory, "gpu", SMALL, train)
    return root, full, last


def test_cuda_checkpoint_recommends_and_reloads_on_cpu(runs, tmp_path):
    root, full, _ = runs
    gpu_file = cuda_copy(full["checkpoint"], tmp_path / "gpu.pth")
    assert recommend(gpu_file, USERS, topk=5) == recommend(full["checkpoint"], USERS, topk=5)
    config, model, _, _, _, test_data = load_data_and_model(gpu_file)
    assert config["device"].type == "cpu" and all(p.device.type == "cpu" for p in model.parameters())
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert trainer.evaluate(test_data, load_best_model=False) == full["test_result"]


def test_cuda_checkpoint_resumes_bit_exactly_with_rng_and_optimiser_on_cpu(runs, tmp_path, monkeypatch):
    root, full, last = runs
    gpu_file = cuda_copy(last, tmp_path / "gpu-last.pth")
    locations = []
    original_load = checkpoint_module.torch.load

    def spy(*args, **kwargs):
        locations.append(kwargs.get("map_location"))
        return original_load(*args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "load", spy)
    config = run_config(root, checkpoint_dir=str(tmp_path / "resumed"), **TRAIN)
    _, _, trainer, (train_data, valid_data, test_data) = build("MICRO", "syn", config_dict=config)
    trainer.device = torch.device("cuda")  # a GPU trainer: state must still be read onto the CPU
    trainer.resume_checkpoint(gpu_file)
    trainer.device = torch.device("cpu")
    assert locations and set(locations) == {"cpu"}
    states = list(trainer.optimizer.state.values())
    assert states and all(s["step"].device.type == "cpu" for s in states)  # no .item() sync per step on a GPU
    assert all(s["exp_avg"].device == p.device for p, s in trainer.optimizer.state.items())
    trainer.fit(train_data, valid_data, saved=True)
    assert trainer.evaluate(test_data, load_best_model=True) == full["test_result"]
    assert trainer.best_valid_result == full["best_valid_result"]


def test_cuda_rng_states_of_a_gpu_file_are_restored_from_cpu_tensors(runs, tmp_path, monkeypatch):
    _, _, last = runs
    rng = load_checkpoint(cuda_copy(last, tmp_path / "gpu-last.pth"))["rng"]
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine with one GPU
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: calls.append(list(states)))
    set_rng_state({"cuda": rng["cuda"]})
    assert len(calls) == 1 and calls[0][0].device.type == "cpu" and calls[0][0].dtype == torch.uint8
    assert torch.equal(calls[0][0], rng["cuda"][0])


def test_multi_process_checkpoint_reloads_in_one_process(runs, tmp_path):
    _, full, _ = runs
    state = torch.load(full["checkpoint"], weights_only=True)
    state["config"].update(single_spec=False, local_rank=0, nproc=2, world_size=2, ip="localhost", port="5678",
                           offset=0, gpu_id="0,1")  # what a DDP process's config says
    ddp_file = tmp_path / "ddp.pth"
    torch.save(state, ddp_file, pickle_protocol=2)
    config, _, _, train_data, _, _ = load_data_and_model(str(ddp_file))
    assert config["single_spec"] is True and config["local_rank"] == 0 and "nproc" not in config
    assert not isinstance(train_data.sampler, torch.utils.data.distributed.DistributedSampler)
    assert not torch.distributed.is_initialized()
    assert recommend(str(ddp_file), USERS, topk=5) == recommend(full["checkpoint"], USERS, topk=5)
    # and the plugin's own saves leave the process keys out
    config.final_config_dict.update(single_spec=False, local_rank=1, nproc=2, world_size=2, offset=0)
    saved = config_to_data(config)
    assert not {"single_spec", "local_rank", "nproc", "world_size", "offset", "device"} & set(saved)


# ------------------------------------------------------------------------------ gpu_id and CUDA set-up
def test_gpu_id_of_a_multi_process_run():
    assert process_gpu_ids("0", 2, user_set=False) == "0,1"  # RecBole's default '0': the first nproc GPUs
    assert process_gpu_ids("0", 4, user_set=False) == "0,1,2,3"
    assert process_gpu_ids("2,3", 2, user_set=True) == "2,3"
    assert process_gpu_ids("0", 2, user_set=True) == "0"  # the user's choice is kept ...
    with pytest.raises(ConfigError) as info:  # ... and refused in one line once GPUs are there
        check_gpu_count("0", 2, visible=4)
    assert "config key 'gpu_id' is '0'" in str(info.value) and "--gpu_id=0,1" in str(info.value)
    with pytest.raises(ConfigError, match=r"\(1 usable GPUs\) but nproc=2"):
        check_gpu_count("0,1", 2, visible=1)
    check_gpu_count("0,1", 2, visible=2)


def _ddp_config(root, **extra):
    return run_config(root, local_rank=0, nproc=2, world_size=2, ip="localhost", port="1", offset=0, **extra)


def _record_cuda_queries(monkeypatch, available, count=2):
    seen = []

    def is_available():
        seen.append((os.environ.get("CUDA_VISIBLE_DEVICES"), torch.are_deterministic_algorithms_enabled(),
                     os.environ.get("CUBLAS_WORKSPACE_CONFIG")))
        return available

    monkeypatch.setattr(torch.cuda, "is_available", is_available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    groups = []
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, **kw: groups.append(backend))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "unset")  # restored after the test (Config writes it)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    return seen, groups


def test_visible_devices_are_set_before_cuda_is_queried(runs, monkeypatch):
    root = runs[0]
    seen, groups = _record_cuda_queries(monkeypatch, available=True)
    config = Config("MICRO", "syn", config_dict=_ddp_config(root))  # rank 0 of 2, gpu_id left at '0'
    assert seen and seen[0][0] == "0,1" and config["gpu_id"] == "0,1"
    assert groups == ["nccl"] and config["device"] == torch.device("cuda", 0) and config["single_spec"] is False
    with pytest.raises(ConfigError, match="nproc=2 processes need one GPU each"):
        Config("MICRO", "syn", config_dict=_ddp_config(root, gpu_id="0"))

    seen, groups = _record_cuda_queries(monkeypatch, available=False)
    config = Config("MICRO", "syn", config_dict=_ddp_config(root))
    assert groups == ["gloo"] and config["device"] == torch.device("cpu")
    seen.clear()
    Config("MICRO", "syn", config_dict=run_config(root, gpu_id="3"))  # one process
    assert seen[0][0] == "3"


def test_run_worker_touches_no_cuda_before_the_config(monkeypatch):
    import recbole.trainer.trainer as recbole_trainer

    for name in ("DistributedDataParallel", "get_local_time", "ensure_dir"):  # restored after the test
        monkeypatch.setattr(recbole_trainer, name, getattr(recbole_trainer, name))
    events = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: events.append("cuda query") or False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: events.append("cuda query") or 0)
    monkeypatch.setattr(quick_start, "run_recbole_micro", lambda *args, **kwargs: events.append("config") or {})

    class Queue(list):
        put = list.append

    quick_start._run_worker(0, "MICRO", "syn", None, {"nproc": 2}, True, Queue(), "stamp")
    assert events == ["config"]


def test_deterministic_switch_is_set_before_cuda(runs, monkeypatch):
    root = runs[0]
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "unset")  # restored after the test
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    seen, _ = _record_cuda_queries(monkeypatch, available=False)
    try:
        Config("MICRO", "syn", config_dict=run_config(root))
        assert seen[-1][1:] == (False, None)  # off by default
        Config("MICRO", "syn", config_dict=run_config(root, deterministic=True))
        assert seen[-1][1:] == (True, ":4096:8")
    finally:
        torch.use_deterministic_algorithms(False)


# ------------------------------------------------------------------------------ host-device syncs
def test_finite_loss_check_syncs_once_per_step(monkeypatch):
    conversions = []
    for method in ("__bool__", "item", "tolist"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method,
                            lambda self, *a, _m=method, _o=original, **k: conversions.append(_m) or _o(self, *a, **k))
    checker = SafeCheckpointMixin()
    losses = (torch.tensor(0.5), torch.tensor(0.25), torch.tensor(0.125))
    checker._check_finite(losses, epoch_idx=0, names=["bpr", "emb", "contrastive"])
    assert conversions == ["__bool__"]  # one sync for all three terms
    checker.saved_model_file = str(Path("absent") / "x.pth")
    with pytest.raises(NonFiniteLossError, match="epoch 3: loss term 'emb' is inf"):
        checker._check_finite((losses[0], torch.tensor(float("inf")), losses[2]), 3, ["bpr", "emb", "contrastive"])
