"""Every general model of RecBole runs through the plugin — trained, tested from its saved (data-only)
checkpoint and recommending from it — so a comparison may include any of RecBole's baselines, the
memory-based ones (ItemKNN, EASE, SLIMElastic, AsymKNN) and RaCT's pre-training included."""

import importlib.util
import inspect

import pytest
import recbole.model.general_recommender as general
from recbole.model.abstract_recommender import GeneralRecommender

from conftest import run_config
from emulated_device import emulated_accelerator
from recbole_micro.checkpoint import load_checkpoint
from recbole_micro.quick_start import run_recbole_micro
from recbole_micro.recommend import recommend

MODELS = sorted(name for name, cls in inspect.getmembers(general, inspect.isclass)
                if issubclass(cls, GeneralRecommender) and cls is not GeneralRecommender)
EXTRA = {
    "RaCT": {"pretrain_epochs": 2, "save_step": 1},  # its first stage, actor pre-training, shortened
    # RecBole's DGCF samples max(users, items) / batches ids of each for its correlation loss: several batches
    "DGCF": {"train_batch_size": 256},
    # the two slowest, smaller (their CNNs score every user-item pair): the path through the plugin is the same
    "ConvNCF": {"embedding_size": 16, "cnn_channels": [1, 8, 8], "cnn_kernels": [4, 4], "cnn_strides": [4, 4]},
    "NNCF": {"num_conv_kernel": 16},
}
NEEDS = {"NCL": "faiss"}  # RecBole imports it inside the model
USERS = ["1", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from recbole_micro.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("recbole-models")
    make_synthetic_dataset(str(root), "syn", n_users=120, n_items=100, n_clusters=8, per_user=(6, 10))
    return root


def test_the_list_is_recboles_own():
    assert len(MODELS) >= 30 and {"BPR", "LightGCN", "EASE", "ItemKNN", "RaCT", "Pop"} <= set(MODELS)


@pytest.fixture(scope="module")
def cold_data(tmp_path_factory):
    from recbole_micro.data.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("recbole-models-cold")
    make_synthetic_dataset(str(root), "syn", n_users=120, n_items=100, n_clusters=8, per_user=(6, 10), cold_items=10)
    return root


def _run(data, model, folder, epochs=2, **extra):
    config = run_config(folder, data_path=str(data), epochs=epochs, eval_step=1, **EXTRA.get(model, {}), **extra)
    result = run_recbole_micro(model=model, dataset="syn", config_dict=config)
    return result, recommend(result["checkpoint"], USERS, topk=5)


@pytest.mark.parametrize("model", MODELS)
def test_recbole_general_model_trains_tests_and_recommends(data, model, tmp_path):
    if model in NEEDS and importlib.util.find_spec(NEEDS[model]) is None:
        pytest.skip(f"RecBole's {model} needs {NEEDS[model]}, not installed here (pip install {NEEDS[model]}-cpu)")
    result, top = _run(data, model, tmp_path, epochs=1)
    assert 0.0 <= result["test_result"]["recall@20"] <= 1.0
    saved = load_checkpoint(result["checkpoint"])  # weights_only: data only
    assert saved["config"]["model"] == model
    assert [len(r["items"]) for r in top] == [5, 5] and all(len(set(r["items"])) == 5 for r in top)


# scores on the CPU whatever the device (numpy / scipy inside: the memory-based models, Random), and one
# autoencoder (a rating matrix filled on the device from host row indices)
ON_A_GPU = ["EASE", "ItemKNN", "SLIMElastic", "ADMMSLIM", "Random", "MultiVAE"]


@pytest.mark.parametrize("model", ON_A_GPU)
def test_on_an_accelerator_they_score_as_on_the_cpu(data, model, tmp_path):
    """A GPU run (``emulated_device``) of a model that scores on the CPU: the plugin's random tie order and
    cold-candidate mask follow the scores' device (before, the tie order on the GPU indexed CPU scores and the
    run crashed at its first validation)."""
    cpu, cpu_top = _run(data, model, tmp_path / "cpu")
    with emulated_accelerator():
        gpu, gpu_top = _run(data, model, tmp_path / "gpu")
    assert gpu["test_result"] == cpu["test_result"] and gpu["best_valid_result"] == cpu["best_valid_result"]
    assert gpu_top == cpu_top


def test_cold_candidates_of_a_cpu_scoring_model_on_an_accelerator(cold_data, tmp_path):
    """``eval_candidates: cold`` masks the warm items' scores; the mask follows the scores to the CPU."""
    cpu, _ = _run(cold_data, "EASE", tmp_path / "cpu", eval_candidates="cold")
    with emulated_accelerator():
        gpu, _ = _run(cold_data, "EASE", tmp_path / "gpu", eval_candidates="cold")
    assert gpu["test_result"] == cpu["test_result"] and gpu["best_valid_result"] == cpu["best_valid_result"]


@pytest.mark.parametrize("model", ["EASE", "ItemKNN"])
def test_a_one_epoch_model_is_validated_whatever_the_validation_period(data, tmp_path, model):
    """RecBole's Trainer validates every min(eval_step, epochs) epochs; its TraditionalTrainer then fixes the
    budget of EASE, ItemKNN, ... at one epoch, so with the reference protocol's eval_step 5 RecBole validated
    nothing, saved no checkpoint, and the test stopped with 'checkpoint ... does not exist' (every trial of a
    search failed so). That epoch is validated now."""
    config = run_config(tmp_path, data_path=str(data), epochs=50, eval_step=5)
    result = run_recbole_micro(model=model, dataset="syn", config_dict=config)
    assert result["epochs_run"] == 1 and result["best_epoch"] == 0
    assert result["best_valid_result"]["recall@20"] == result["best_valid_score"] > 0
    assert 0 < result["test_result"]["recall@20"] <= 1
