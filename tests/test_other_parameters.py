"""RecBole's memory-based baselines (ItemKNN, AsymKNN, EASE, SLIMElastic) keep numpy and scipy matrices in
``other_parameter``: a data-only checkpoint holds them as tensors and reads them back value for value, so
these models train, test and recommend through the plugin like every other (before, the plugin's own loader
refused the checkpoint its trainer had just written, at the final test)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import run_config
from recbole_micro import other_parameters
from recbole_micro.checkpoint import load_checkpoint, save_checkpoint
from recbole_micro.errors import CheckpointError
from recbole_micro.quick_start import build
from recbole_micro.recommend import recommend

SMALL = dict(n_users=80, n_items=100, n_clusters=8, per_user=(6, 10))


class Holder:
    """Stands in for a model: ``other_parameter()`` as RecBole's ``AbstractRecommender`` returns it."""

    def __init__(self, **values):
        self.values = values

    def other_parameter(self):
        return self.values


def test_matrices_round_trip_through_a_data_only_file(tmp_path):
    rng = np.random.default_rng(0)
    matrix = sp.random(6, 5, density=0.4, format="csr", random_state=1, dtype=np.float32)
    values = {"dense": rng.random((5, 4)).astype(np.float32), "counts": np.arange(7), "csr": matrix,
              "np.matrix": np.asmatrix(rng.random((3, 3))),
              "csc": matrix.tocsc(), "coo": matrix.tocoo(), "lil": matrix.tolil(), "dok": matrix.todok(),
              "tensor": torch.arange(3.0), "none": None, "number": 3}
    path = tmp_path / "state.pth"
    save_checkpoint({"config": {"model": "M", "dataset": "d"}, "state_dict": {},
                     "other_parameter": other_parameters.to_data(Holder(**values))}, path)
    back = other_parameters.from_data(load_checkpoint(path)["other_parameter"])  # weights_only: data only
    assert set(back) == set(values)
    for key, value in values.items():
        got = back[key]
        assert type(got) is type(value), key
        if sp.issparse(value):
            assert (got.format, got.dtype, got.shape) == (value.format, value.dtype, value.shape)
            np.testing.assert_array_equal(got.toarray(), value.toarray())
        elif isinstance(value, np.ndarray):
            assert got.dtype == value.dtype
            np.testing.assert_array_equal(got, value)
        elif torch.is_tensor(value):
            assert torch.equal(got, value)
        else:
            assert got == value
    for form in ("csr", "csc"):  # compressed formats keep their own arrays, element for element
        for part in ("data", "indices", "indptr"):
            np.testing.assert_array_equal(getattr(back[form], part), getattr(values[form], part))


def test_a_value_no_data_only_file_can_hold_is_one_line_naming_model_and_key():
    with pytest.raises(CheckpointError) as info:
        other_parameters.to_data(Holder(w=np.zeros(2), ripple_set={1: [2, 3]}))
    assert str(info.value).startswith("Holder keeps 'ripple_set' (dict) outside its parameters;")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("model", ["ItemKNN", "AsymKNN", "EASE", "SLIMElastic"])
def test_memory_based_baselines_score_the_same_from_their_checkpoint(tmp_path, synthetic, model):
    name = synthetic("syn", **SMALL)
    config, net, trainer, (train, valid, test) = build(model, name, None, run_config(tmp_path, epochs=1))
    trainer.fit(train, valid, saved=True)
    kinds = {k: type(v) for k, v in net.other_parameter().items()}
    assert any(isinstance(v, np.ndarray) or sp.issparse(v) for v in net.other_parameter().values())
    in_memory = trainer.evaluate(test, load_best_model=False)
    from_file = trainer.evaluate(test, load_best_model=True)  # the run's final test: its best checkpoint
    assert from_file == in_memory and in_memory["recall@20"] > 0
    assert {k: type(v) for k, v in net.other_parameter().items()} == kinds
    top = recommend(trainer.saved_model_file, ["1", "2"], topk=5)  # a fresh process's way in
    assert [len(r["items"]) for r in top] == [5, 5]


def test_ract_pretraining_stages_save_data_only_files_the_next_stage_and_the_test_read(tmp_path, synthetic):
    """RaCT trains in three stages, each from the file the one before saved (``pre_model_path``); RecBole's
    pre-training save pickles its Config, which the final test refused. Each stage's file is data only now and
    scores as the model in memory did."""
    name = synthetic("syn", **SMALL)
    previous = None
    for stage in ("actor_pretrain", "critic_pretrain", "finetune"):
        config = run_config(tmp_path / stage, data_path=str(tmp_path), epochs=2, pretrain_epochs=2, save_step=1,
                            train_stage=stage, **({"pre_model_path": previous} if previous else {}))
        _, net, trainer, (train, valid, test) = build("RaCT", name, None, config)
        trainer.fit(train, valid, saved=True)
        in_memory = trainer.evaluate(test, load_best_model=False)
        saved = load_checkpoint(trainer.saved_model_file)  # weights_only, data only
        assert saved["config"]["model"] == "RaCT" and isinstance(saved["config"], dict)
        assert trainer.evaluate(test, load_best_model=True) == in_memory, stage
        previous = trainer.saved_model_file
