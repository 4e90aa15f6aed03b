"""Checkpoints: bit-equal save → load → evaluate, weights-only loading, exact resume, run records,
reproducibility, refused foreign/corrupt files, and the non-finite-loss stop that keeps the last good file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_config, train_on_synthetic
from recbole_micro.checkpoint import load_checkpoint
from recbole_micro.config import Config, config_from_data
from recbole_micro.config_data import config_to_data
from recbole_micro.errors import CheckpointError
from recbole_micro.quick_start import build, load_data_and_model, run_recbole_micro
from recbole_micro.trainer import NonFiniteLossError, SafeCheckpointMixin
from recbole_micro.utils import get_model, get_trainer

SMALL = dict(n_users=40, n_items=50, n_clusters=5, per_user=(6, 10), dims={"image": 12, "text": 6})
EPOCHS = 5
TRAIN = dict(epochs=EPOCHS, eval_step=1, stopping_step=10, train_batch_size=128, seed=7)


def run(root, name="syn", tag="run", model="MICRO", resume=None, **overrides):
    config = run_config(Path(root), checkpoint_dir=str(Path(root) / tag), **{**TRAIN, **overrides})
    return run_recbole_micro(model=model, dataset=name, config_dict=config, resume=resume)




@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One uninterrupted 5-epoch run on a small generated dataset (shared by the tests below)."""
    return train_on_synthetic(tmp_path_factory, "ckpt", SMALL, lambda root: run(root, tag="first"))


# ------------------------------------------------------------------------------------------ save/load
def test_save_load_evaluate_is_bit_equal(trained):
    root, result = trained
    assert torch.__version__.startswith("2.")
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(result["checkpoint"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert trainer.evaluate(test_data, load_best_model=False) == result["test_result"]
    assert trainer.evaluate(valid_data, load_best_model=False) == result["best_valid_result"]


def _plain(value):
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def test_checkpoint_is_data_only_and_holds_resume_state(trained):
    root, result = trained
    for path in (result["checkpoint"], result["checkpoint"][:-4] + "-last.pth"):
        # plain weights-only loading, no extra globals: nothing but tensors, numbers, strings, lists, dicts
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        raw = torch.load(path, weights_only=True)
        assert _plain(raw["config"]) and type(raw["best_valid_score"]) is float
        assert all(type(v) is float for v in raw["best_valid_result"].values())
    checkpoint = load_checkpoint(result["checkpoint"])
    assert checkpoint["kind"] == "best" and checkpoint["best_checkpoint"] == result["checkpoint"]
    assert checkpoint["best_valid_result"] == result["best_valid_result"]
    assert {"python", "numpy", "torch", "loader"} <= set(checkpoint["rng"])
    config = checkpoint["config"]
    assert config["model"] == "MICRO" and config["dataset"] == "syn" and config["seed"] == 7
    assert config["data_path"] == os.path.abspath(root)  # the folder holding syn/, absolute
    assert not {"device", "MODEL_TYPE", "eval_type", "local_rank", "single_spec"} & set(config)
    data = checkpoint["data"]
    assert len(data["user_tokens"]) == SMALL["n_users"] + 1 and data["item_tokens"][0] == "[PAD]"
    last = load_checkpoint(result["checkpoint"][:-4] + "-last.pth")
    assert last["kind"] == "last" and last["epoch"] == EPOCHS - 2  # written at the start of the last epoch


@pytest.mark.parametrize("model", ["MICRO", "LATTICE", "BPR", "LightGCN"])
def test_config_rebuilt_from_its_data_equals_the_original(trained, model):
    root, _ = trained
    config = Config(model=model, dataset="syn", config_dict=run_config(Path(root), **TRAIN))
    data = config_to_data(config)
    rebuilt = config_from_data(data)
    assert rebuilt.final_config_dict == config.final_config_dict  # every key, derived ones recomputed
    assert config_from_data(torch.load(_round_trip(data, root), weights_only=True)).final_config_dict == \
        config.final_config_dict


def _round_trip(data, root):
    path = Path(root) / "config-only.pth"
    torch.save(data, path, pickle_protocol=2)
    return path


def test_untrusted_global_is_refused_before_unpickling(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"config": {}, "state_dict": {}, "hook": os.getcwd}, path, pickle_protocol=2)
    with pytest.raises(CheckpointError, match=r"refused: it holds 'posix.getcwd'.*nothing in it was run"):
        load_checkpoint(path)


def test_run_record_holds_config_and_result(trained):
    _, result = trained
    record_path = Path(result["record"])
    assert record_path == Path(result["checkpoint"]).with_suffix(".json")
    record = json.loads(record_path.read_text())
    assert record["result"]["test_result"] == result["test_result"]
    assert record["result"]["best_valid_result"] == result["best_valid_result"]
    config = record["config"]
    for key, value in {"model": "MICRO", "dataset": "syn", "seed": 7, "epochs": EPOCHS, "knn_k": 10,
                       "lambda_coeff": 0.9, "cf_model": "lightgcn", "modalities": ["image", "text"],
                       "learning_rate": 0.0005, "valid_metric": "Recall@20",
                       # the training protocol (the resume tests below therefore resume the user sampler)
                       "train_sampler": "user", "zero_grad_set_to_none": False, "init_scheme": "reference",
                       "test_mask_valid": True}.items():
        assert config[key] == value, key


def test_same_seed_same_metrics(trained):
    root, first = trained
    second = run(root, tag="second")
    assert second["test_result"] == first["test_result"]
    assert second["best_valid_result"] == first["best_valid_result"]
    assert second["best_valid_score"] == first["best_valid_score"]


# ------------------------------------------------------------------------------------------ resume
class Interrupt(Exception):
    pass


def _spy_start_epoch(monkeypatch):
    starts = []
    original = SafeCheckpointMixin.fit

    def fit(self, *args, **kwargs):
        starts.append(self.start_epoch)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SafeCheckpointMixin, "fit", fit)
    return starts


def _interrupted_run(root, tag, at_epoch, model="MICRO"):
    def stop(epoch_idx, valid_score):
        if epoch_idx == at_epoch:
            raise Interrupt
    config = run_config(Path(root), checkpoint_dir=str(Path(root) / tag), **TRAIN)
    with pytest.raises(Interrupt):
        run_recbole_micro(model=model, dataset="syn", config_dict=config, callback_fn=stop)
    files = sorted(p for p in (Path(root) / tag).iterdir() if p.suffix == ".pth")
    assert len(files) == 2, files  # <model>-<time>.pth (best) and <model>-<time>-last.pth
    best, last = (files[1], files[0]) if files[0].name.endswith("-last.pth") else (files[0], files[1])
    return best, last


@pytest.mark.parametrize("which", ["last", "best"])
def test_resume_continues_and_matches_uninterrupted_run(trained, monkeypatch, which):
    root, full = trained
    best, last = _interrupted_run(root, f"interrupted-{which}", at_epoch=2)
    path = last if which == "last" else best
    saved_epoch = load_checkpoint(path)["epoch"]
    assert saved_epoch == (1 if which == "last" else load_checkpoint(best)["epoch"])
    starts = _spy_start_epoch(monkeypatch)
    config = run_config(Path(root), checkpoint_dir=str(Path(root) / f"resumed-{which}"), **TRAIN)
    resumed = run_recbole_micro(model="MICRO", dataset="syn", config_dict=config, resume=str(path))
    assert starts == [saved_epoch + 1]
    assert resumed["epochs_run"] == EPOCHS - saved_epoch - 1
    assert resumed["checkpoint"] == str(best)  # the run's best file keeps being the one updated
    # same seed, config and data: the interrupted-then-resumed run ends exactly where the uninterrupted one did
    assert resumed["best_valid_result"] == full["best_valid_result"]
    assert resumed["test_result"] == full["test_result"]


@pytest.mark.parametrize("model", ["VBPR", "BM3", "FREEDOM", "LGMRec"])
def test_each_multimodal_baseline_resumes_to_its_uninterrupted_run(trained, model):
    """The converged jobs resume these models from ``-last.pth``: their random parts (BM3's dropout views,
    FREEDOM's per-epoch pruning of the user–item graph, LGMRec's Gumbel noise and hyperedge dropout) must
    continue the uninterrupted run's draws, so the resumed run ends on its numbers to the bit."""
    root, _ = trained
    full = run(root, tag=f"full-{model}", model=model)
    _, last = _interrupted_run(root, f"cut-{model}", at_epoch=2, model=model)
    assert load_checkpoint(last)["epoch"] == 1
    resumed = run(root, tag=f"resumed-{model}", model=model, resume=str(last))
    assert resumed["epochs_run"] == EPOCHS - 2
    assert resumed["best_valid_result"] == full["best_valid_result"] and resumed["test_result"] == full["test_result"]


# ------------------------------------------------------------------------------------------ refused files
@pytest.fixture
def syn_trainer(trained):
    root, _ = trained
    argv_config = run_config(Path(root), checkpoint_dir=str(Path(root) / "probe"), **TRAIN)
    config, net, trainer, (train_data, valid_data, test_data) = build(model="MICRO", dataset="syn", config_dict=argv_config)
    return root, trainer, test_data


def _assert_refused(trainer, test_data, path, *parts):
    for attempt in (lambda: trainer.evaluate(test_data, model_file=str(path)),
                    lambda: trainer.resume_checkpoint(path)):
        with pytest.raises(CheckpointError) as info:
            attempt()
        message = str(info.value)
        assert "\n" not in message and str(path) in message
        for part in parts:
            assert part in message, (part, message)


def test_corrupt_truncated_and_empty_files(trained, syn_trainer, tmp_path):
    _, result = trained
    _, trainer, test_data = syn_trainer
    data = Path(result["checkpoint"]).read_bytes()
    cases = {"truncated.pth": data[: len(data) // 2], "garbage.pth": os.urandom(4096), "empty.pth": b""}
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        _assert_refused(trainer, test_data, path, "corrupt, truncated or not a torch checkpoint", "retrain")
        with pytest.raises(CheckpointError):
            load_data_and_model(str(path))
    _assert_refused(trainer, test_data, tmp_path / "absent.pth", "does not exist")


def test_checkpoint_of_another_dataset_or_model(trained, syn_trainer, synthetic, tmp_path):
    root, trainer, test_data = syn_trainer
    other = synthetic("other", **{**SMALL, "n_items": 40})
    _, _, other_trainer, _ = build(model="MICRO", dataset=other, config_dict=run_config(tmp_path, **TRAIN))
    other_trainer._save_checkpoint(0, verbose=False)
    _assert_refused(trainer, test_data, other_trainer.saved_model_file, "trained with dataset 'other'",
                    "this run uses 'syn'", "--dataset=other")

    _, _, bpr_trainer, _ = build(model="BPR", dataset="syn", config_dict=run_config(
        Path(root), checkpoint_dir=str(tmp_path / "bpr"), **TRAIN))
    bpr_trainer._save_checkpoint(0, verbose=False)
    _assert_refused(trainer, test_data, bpr_trainer.saved_model_file, "trained with model 'BPR'", "this run uses 'MICRO'")

    # same dataset name, different data (e.g. regenerated with other items): the shapes do not fit
    changed = tmp_path / "changed"
    from recbole_micro.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(str(changed), "syn", **{**SMALL, "n_items": 45})
    _, _, changed_trainer, _ = build(model="MICRO", dataset="syn", config_dict=run_config(changed, **TRAIN))
    changed_trainer._save_checkpoint(0, verbose=False)
    _assert_refused(trainer, test_data, changed_trainer.saved_model_file, "does not fit the data in",
                    "its 45 item tokens differ from the data's 50", "retrain")


# ------------------------------------------------------------------------------------------ numerical health
@pytest.mark.parametrize("term", [0, 2])
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(trained, monkeypatch, term):
    root, _ = trained
    model_class = get_model("MICRO")
    original = model_class.calculate_loss
    poisoned = {"on": False}

    def calculate_loss(self, interaction):
        losses = list(original(self, interaction))
        if poisoned["on"]:
            losses[term] = losses[term] * float("nan")
        return tuple(losses)

    monkeypatch.setattr(model_class, "calculate_loss", calculate_loss)

    def poison_after_first_epoch(epoch_idx, valid_score):
        poisoned["on"] = True

    tag = f"nan-{term}"
    config = run_config(Path(root), checkpoint_dir=str(Path(root) / tag), **TRAIN)
    with pytest.raises(NonFiniteLossError) as info:
        run_recbole_micro(model="MICRO", dataset="syn", config_dict=config, callback_fn=poison_after_first_epoch)
    message = str(info.value)
    name = model_class.loss_names[term]
    assert "\n" not in message and f"epoch 1: loss term '{name}' is nan" in message
    saved = sorted(p for p in (Path(root) / tag).iterdir() if p.suffix == ".pth")  # best and -last
    assert len(saved) == 2 and all(str(p) in message for p in saved), message
    assert "kept" in message and "lower learning_rate" in message
    monkeypatch.setattr(model_class, "calculate_loss", original)
    assert [load_checkpoint(p)["epoch"] for p in saved] == [0, 0]
    best = next(p for p in saved if not p.name.endswith("-last.pth"))
    config, model, dataset, train_data, valid_data, test_data = load_data_and_model(str(best))
    metrics = get_trainer(config["MODEL_TYPE"], "MICRO")(config, model).evaluate(test_data, load_best_model=False)
    assert len(metrics) == 8 and torch.isfinite(torch.tensor(list(metrics.values()))).all(), metrics  # finite, loadable


def test_cli_prints_non_finite_loss_as_one_line(trained):
    root, _ = trained
    result = subprocess.run(
        [sys.executable, str(REPO / "run_recbole_micro.py"), "--dataset", "syn", f"--data_path={root}",
         f"--checkpoint_dir={root / 'cli-nan'}", "--learning_rate=1e30", "--epochs=3", "--train_batch_size=64",
         "--state=ERROR"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: epoch ") and "loss term '" in lines[0], result.stderr


def test_an_interrupted_save_keeps_the_previous_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    """Ctrl-C or SIGTERM while a checkpoint is written: the file already in place is untouched and the partial
    temporary file is removed."""
    from recbole_micro import checkpoint as checkpoint_module

    path = tmp_path / "run-last.pth"
    checkpoint_module.save_checkpoint({"epoch": 3}, str(path))
    before = path.read_bytes()

    def torn(state, target, **kwargs):
        with open(target, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_module.save_checkpoint({"epoch": 4}, str(path))
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["run-last.pth"]
