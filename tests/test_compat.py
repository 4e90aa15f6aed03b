"""``recbole_micro.compat``: RecBole 1.2.1 on numpy 2, pandas 3, scipy >= 1.13, hyperopt >= 0.2.7,
setuptools >= 81 and Ray 2.6 on numpy 2 -- and unchanged on the pinned versions.

Every test asserts behaviour that must hold on both stacks: on the pinned one RecBole's own code runs,
on the newest one RecBole's code with the fix. Where a fix is in force, the test also runs RecBole's
original function and checks that it really breaks there, so no fix is dead code. With a fix turned
off (``RECBOLE_MICRO_COMPAT_OFF=<fix name>``) its tests fail on the newest stack.
"""

import importlib.util
import inspect
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import REPO, run_config, train_on_synthetic
from recbole_micro import compat

FIXES = compat.needed()
NEW = {fix: fix in FIXES for fix in ("numpy>=2", "pandas>=3", "scipy>=1.13", "hyperopt>=0.2.7",
                                      "ray<2.7 on numpy>=2", "setuptools>=81", "ray>=2.7")}


def original(function):
    """RecBole's own function behind a fix (the function itself where no fix replaced it)."""
    return inspect.unwrap(function)


def child_env():
    """This process's environment without what ``compat`` added to it: a child must set that up itself."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    paths = [p for p in env.pop("PYTHONPATH", "").split(os.pathsep) if p and p != compat.STANDIN_PATH]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    if env.get("RAY_RUNTIME_ENV_HOOK") == "recbole_micro.compat.ray_runtime_env":
        del env["RAY_RUNTIME_ENV_HOOK"]
    return env


# ----------------------------------------------------------------------------------- the registry
def test_fixes_follow_the_installed_versions():
    """A fix is in force exactly when its library is at the version that broke RecBole; otherwise
    RecBole's own function is in place (nothing changes on the pinned versions)."""
    import recbole.config.configurator as configurator
    import recbole.data.dataset.dataset as dataset
    import recbole.model.general_recommender.lightgcn as lightgcn
    import recbole.quick_start.quick_start as quick_start
    import recbole.trainer.hyper_tuning as hyper_tuning

    def versions(name):
        return compat.release(__import__(name).__version__)

    assert NEW["numpy>=2"] == (versions("numpy") >= (2,))
    assert NEW["pandas>=3"] == (versions("pandas") >= (3,))
    assert NEW["scipy>=1.13"] == (versions("scipy") >= (1, 13))
    assert NEW["hyperopt>=0.2.7"] == (versions("hyperopt") >= (0, 2, 7))
    replaced = {
        "numpy>=2": [configurator.Config.compatibility_settings],
        "pandas>=3": [dataset.Dataset._load_feat, dataset.Dataset._fill_nan, dataset.Dataset._dataframe_to_interaction,
                      dataset.Dataset._remap, dataset.Dataset._normalize],
        "scipy>=1.13": [lightgcn.LightGCN.get_norm_adj_mat],
        "hyperopt>=0.2.7": [hyper_tuning.exhaustive_search],
        "ray>=2.7": [quick_start.objective_function],  # tests/test_ray_optional.py tunes with it
    }
    for fix, functions in replaced.items():
        for function in functions:
            if NEW[fix]:
                assert compat.fixed_by(function) == fix and original(function) is not function
            else:
                assert compat.fixed_by(function) is None and function.__module__.startswith("recbole.")
    assert {fix for fix, _ in compat.applied()} == set(FIXES)


def test_release_parses_versions():
    assert compat.release("1.13.0rc1") == (1, 13, 0)
    assert compat.release("2.4.6") == (2, 4, 6)
    assert compat.release("0.2.5") < (0, 2, 7) <= compat.release("0.3.0")
    assert compat.release("2.13.0+cpu") == (2, 13, 0)


# ----------------------------------------------------------------------------------- pandas 3
GAPS_INTER = [  # user, item, rating ('' = missing), timestamp
    ("u1", "007", "4", "1"), ("u1", "2", "", "2"), ("u2", "007", "2", "3"), ("u2", "3", "5", "4"),
    ("u3", "4", "1", "5"), ("u3", "2", "3", "6"), ("u4", "3", "4", "7"), ("u4", "4", "5", "8"),
]
GAPS_ITEM = [  # item, price ('' = missing), brand ('' = missing), tags ('' = empty), vec; item 4 has no row
    ("007", "3.0", "acme", "red big", "0.5 2.0"), ("2", "", "zeta", "", "1.0 -1.0"), ("3", "6.0", "", "big", "4.0 0.0"),
]


def write_gaps(root):
    folder = Path(root) / "gaps"
    folder.mkdir(parents=True, exist_ok=True)
    inter = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"] + ["\t".join(r) for r in GAPS_INTER]
    item = ["item_id:token\tprice:float\tbrand:token\ttags:token_seq\tvec:float_seq"]
    item += ["\t".join(r) for r in GAPS_ITEM]
    (folder / "gaps.inter").write_text("\n".join(inter) + "\n")
    (folder / "gaps.item").write_text("\n".join(item) + "\n")
    return "gaps"


def gaps_dataset(tmp_path, **extra):
    """RecBole's Dataset (model BPR) on the gaps atoms: frames after RecBole's processing."""
    from recbole_micro.config import Config
    from recbole_micro.utils import create_dataset

    name = write_gaps(tmp_path)
    config = Config(model="BPR", dataset=name, config_dict=run_config(
        tmp_path, load_col={"inter": ["user_id", "item_id", "rating", "timestamp"],
                            "item": ["item_id", "price", "brand", "tags", "vec"]},
        filter_inter_by_user_or_item=False, user_inter_num_interval="[0,inf)", item_inter_num_interval="[0,inf)",
        **{"normalize_all": False, "normalize_field": None, **extra}))
    return create_dataset(config)


def item_rows(dataset):
    """``{item token: {field: value}}`` of the processed item frame."""
    frame = dataset.item_feat
    tokens = dataset.id2token("item_id", frame["item_id"].to_numpy())
    return {token: {k: frame[k].iloc[row] for k in frame.columns} for row, token in enumerate(tokens)}


def test_missing_values_are_filled_as_recbole_documents(tmp_path):
    """RecBole fills a missing float with the column mean, a missing token with [PAD] (0) and an empty
    sequence cell with an empty sequence -- under pandas 3 through compat (its inplace fillna is a no-op)."""
    dataset = gaps_dataset(tmp_path)
    ratings = [float(r[2]) for r in GAPS_INTER if r[2]]
    prices = [float(r[1]) for r in GAPS_ITEM if r[1]]
    inter = dataset.inter_feat
    pairs = zip(dataset.id2token("user_id", inter["user_id"].to_numpy()),
                dataset.id2token("item_id", inter["item_id"].to_numpy()))
    rating = dict(zip(pairs, inter["rating"].tolist()))
    assert len(rating) == len(GAPS_INTER)
    for user, item, value, _ in GAPS_INTER:
        expected = float(value) if value else np.mean(ratings)
        assert rating[(user, item)] == pytest.approx(expected, abs=1e-6), (user, item)

    rows = item_rows(dataset)
    for token, price, brand, tags, vec in GAPS_ITEM + [("4", "", "", "", "")]:
        row = rows[token]
        assert row["price"] == pytest.approx(float(price) if price else np.mean(prices), abs=1e-6), token
        if brand:
            assert dataset.id2token("brand", int(row["brand"])) == brand
        else:
            assert int(row["brand"]) == 0  # [PAD]
        assert dataset.id2token("tags", np.asarray(row["tags"], dtype=np.int64)).tolist() == tags.split()
        np.testing.assert_allclose(np.asarray(row["vec"], dtype=float), [float(v) for v in vec.split()])
    assert not dataset.item_feat["price"].isna().any() and not inter["rating"].isna().any()
    assert not dataset.item_feat["brand"].isna().any()

    if NEW["pandas>=3"]:  # RecBole's own function really breaks on this stack
        from recbole.data.dataset.dataset import Dataset
        from recbole.utils import FeatureSource

        with pytest.raises(AttributeError, match="split"):  # NaN.split: the empty tags cell stayed NaN
            original(Dataset._load_feat)(dataset, str(tmp_path / "gaps" / "gaps.item"), FeatureSource.ITEM)


def test_min_max_normalisation_of_float_and_float_seq_fields(tmp_path):
    """``normalize_field``: (x - min) / (max - min) over the field; a float_seq field over all its values,
    row lengths kept (RecBole splits the normalised values by ``series.agg(len)``)."""
    dataset = gaps_dataset(tmp_path, normalize_field=["price", "vec"])
    prices = [float(r[1]) for r in GAPS_ITEM if r[1]]
    values = [float(v) for r in GAPS_ITEM for v in r[4].split()]
    lo, hi = min(values), max(values)
    rows = item_rows(dataset)
    for token, price, _, _, vec in GAPS_ITEM + [("4", "", "", "", "")]:
        filled = float(price) if price else np.mean(prices)
        assert rows[token]["price"] == pytest.approx((filled - min(prices)) / (max(prices) - min(prices)), abs=1e-6)
        expected = [(float(v) - lo) / (hi - lo) for v in vec.split()]
        np.testing.assert_allclose(np.asarray(rows[token]["vec"], dtype=float), expected, atol=1e-9)


def test_token_columns_keep_numpy_strings_and_leading_zeros(tmp_path):
    """Tokens stay strings ('007' is not 7) and map back and forth through ``field2id_token``; the frames
    RecBole reads hold numpy object columns (pandas 3's ``str`` dtype is not an ndarray)."""
    dataset = gaps_dataset(tmp_path)
    tokens = dataset.field2id_token["item_id"]
    assert isinstance(tokens, np.ndarray) and tokens.dtype.kind == "U" and tokens[0] == "[PAD]"
    assert set(tokens[1:]) == {r[1] for r in GAPS_INTER}
    ids = dataset.token2id("item_id", np.array(["007", "4"], dtype=object))
    assert dataset.id2token("item_id", ids).tolist() == ["007", "4"]
    from recbole.utils import FeatureSource

    frame = dataset._load_feat(str(tmp_path / "gaps" / "gaps.item"), FeatureSource.ITEM)
    assert isinstance(frame["item_id"].values, np.ndarray) and frame["item_id"].dtype == object
    assert frame["item_id"].tolist() == [r[0] for r in GAPS_ITEM]
    assert dataset.token2id("item_id", frame["item_id"].values).tolist() == [
        dataset.token2id("item_id", r[0]) for r in GAPS_ITEM]


def test_interaction_tensors_from_frames_are_writable_without_warnings(tmp_path):
    """``Dataset._dataframe_to_interaction``: int64/float32 tensors with the frame's values, which torch may
    write to without a warning (under pandas 3 a column's ``.values`` is a read-only view: the fix hands
    torch a copy instead of letting it share that buffer)."""
    import warnings

    import pandas as pd

    dataset = gaps_dataset(tmp_path)
    frame = pd.DataFrame({"user_id": np.arange(1, 4, dtype=np.int64), "rating": [1.0, 2.0, 3.0]})
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not writable")  # torch's warning on read-only arrays
        inter = dataset._dataframe_to_interaction(frame)
        inter["user_id"][0] = 9
    assert inter["user_id"].dtype == torch.int64 and inter["rating"].dtype == torch.float32
    assert inter["user_id"].tolist() == [9, 2, 3] and inter["rating"].tolist() == [1.0, 2.0, 3.0]
    values = frame["user_id"].values
    if NEW["pandas>=3"]:
        assert not values.flags.writeable and frame["user_id"].tolist() == [1, 2, 3]


def test_multimodal_rows_follow_tokens_with_leading_zeros(tmp_path):
    """The plugin's feature alignment maps the atom's item tokens through ``token2id`` (an ndarray of
    tokens) -- row '007' of the feature atom is item '007'."""
    from recbole_micro.config import Config
    from recbole_micro.utils import create_dataset

    write_gaps(tmp_path)
    rng = np.random.default_rng(0)
    items = sorted({r[1] for r in GAPS_INTER})
    vectors = {item: rng.normal(size=4).round(4) for item in items}
    lines = ["item_id:token\timage_feat:float_seq"] + [f"{i}\t{' '.join(map(str, v))}" for i, v in vectors.items()]
    (tmp_path / "gaps" / "gaps.image").write_text("\n".join(lines) + "\n")
    config = Config(model="MICRO", dataset="gaps", config_dict=run_config(
        tmp_path, modalities=["image"], knn_k=2, user_inter_num_interval="[0,inf)",
        item_inter_num_interval="[0,inf)", eval_args={"split": {"RS": [0.5, 0.25, 0.25]}, "order": "RO",
                                                       "group_by": "user", "mode": "full"}))
    dataset = create_dataset(config)
    matrix = dataset.modality_features["image"].numpy()
    for item, vector in vectors.items():
        np.testing.assert_allclose(matrix[dataset.token2id("item_id", item)], vector, rtol=1e-6)


# ----------------------------------------------------------------------------------- scipy 1.13
def graph_stub(n_users=5, n_items=4, seed=0):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.5).astype(np.float32)
    dense[0, :] = 0  # a user without interactions: degree 0
    inter = sp.coo_matrix(dense)
    return types.SimpleNamespace(interaction_matrix=inter, inter_matrix=inter, n_users=n_users, n_items=n_items,
                                 n_entities=n_items, device=torch.device("cpu")), dense


def bipartite(dense):
    n_users, n_items = dense.shape
    a = np.zeros((n_users + n_items,) * 2)
    a[:n_users, n_users:] = dense
    a[n_users:, :n_users] = dense.T
    return a


def sym_norm(a, eps=1e-7):
    d = (a.sum(1) + eps) ** -0.5
    return d[:, None] * a * d[None, :]


@pytest.mark.parametrize("module, cls", [("general_recommender.lightgcn", "LightGCN"),
                                         ("general_recommender.ngcf", "NGCF"),
                                         ("general_recommender.ncl", "NCL"),
                                         ("general_recommender.gcmc", "GCMC")])
def test_normalised_adjacency_of_recbole_graph_models(module, cls):
    """D^-1/2 A D^-1/2 of the user-item graph (RecBole adds 1e-7 to the degrees), built by RecBole's own
    ``get_norm_adj_mat`` -- which calls ``dok_matrix._update``, removed in scipy 1.13."""
    owner = getattr(__import__(f"recbole.model.{module}", fromlist=[cls]), cls)
    stub, dense = graph_stub()
    adj = owner.get_norm_adj_mat(stub)
    np.testing.assert_allclose(adj.to_dense().numpy(), sym_norm(bipartite(dense)), rtol=1e-5, atol=1e-7)
    if NEW["scipy>=1.13"]:
        with pytest.raises(AttributeError, match="_update"):
            original(owner.get_norm_adj_mat)(stub)


def test_spectralcf_laplacian():
    """SpectralCF's L = I - D^-1 A."""
    from recbole.model.general_recommender.spectralcf import SpectralCF

    stub, dense = graph_stub()
    stub.get_eye_mat = types.MethodType(SpectralCF.get_eye_mat, stub)
    a = bipartite(dense)
    expected = np.eye(len(a)) - a / (a.sum(1) + 1e-7)[:, None]
    np.testing.assert_allclose(SpectralCF.get_laplacian_matrix(stub).to_dense().numpy(), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls", ["KGIN", "MCCLK"])
@pytest.mark.parametrize("mode", ["bi", "si"])
def test_knowledge_graph_models_interaction_matrix(cls, mode):
    """KGIN/MCCLK: D^-1/2 A D^-1/2 ('bi') or D^-1 A ('si') with zero-degree rows left at 0, and its
    user x entity block."""
    owner = getattr(__import__(f"recbole.model.knowledge_aware_recommender.{cls.lower()}", fromlist=[cls]), cls)
    stub, dense = graph_stub()
    a = bipartite(dense)
    deg = a.sum(1)
    with np.errstate(divide="ignore"):
        scale = np.where(deg > 0, deg ** (-0.5 if mode == "bi" else -1.0), 0.0)
    expected = scale[:, None] * a * (scale[None, :] if mode == "bi" else 1.0)
    norm_matrix, norm_graph = owner.get_norm_inter_matrix(stub, mode=mode)
    np.testing.assert_allclose(norm_graph.to_dense().numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(norm_matrix.to_dense().numpy(), expected[:stub.n_users, stub.n_users:], rtol=1e-5,
                               atol=1e-7)


def test_lightgcn_model_on_a_dataset_matches_the_dense_formula(tmp_path, synthetic):
    """The whole LightGCN model built on a plugin dataset: its graph is the normalised training graph."""
    from recbole.data import data_preparation
    from recbole_micro.config import Config
    from recbole_micro.utils import create_dataset, get_model

    name = synthetic("syn", n_users=30, n_items=40, n_clusters=4, per_user=(5, 8))
    config = Config(model="LightGCN", dataset=name, config_dict=run_config(tmp_path))
    train, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("LightGCN")(config, train._dataset)
    dense = train._dataset.inter_matrix(form="coo").toarray()
    np.testing.assert_allclose(model.norm_adj_matrix.to_dense().numpy(), sym_norm(bipartite(dense)), rtol=1e-5,
                               atol=1e-7)


# ----------------------------------------------------------------------------------- numpy 2
def test_config_defines_recbole_numpy_aliases(tmp_path, synthetic):
    """RecBole's code uses np.float, np.int, np.bool ...: Config defines them on every numpy."""
    from recbole_micro.config import Config

    name = synthetic("syn", n_users=20, n_items=30, n_clusters=3, per_user=(5, 8))
    Config(model="BPR", dataset=name, config_dict=run_config(tmp_path))
    assert np.float is np.float64 and np.int is np.int_ and np.bool is np.bool_ and np.object is np.object_
    assert np.str is np.str_ and np.complex is np.complex128 and np.unicode is np.str_
    if NEW["numpy>=2"]:
        from recbole.config import Config as RecBoleConfig

        with pytest.raises(AttributeError, match="float_"):
            original(RecBoleConfig.compatibility_settings)(None)


FRESH_PROCESS = r"""
import json, sys
import numpy as np
import torch
torch.set_num_threads(1)
before = "float" in vars(np)
from recbole_micro.quick_start import load_data_and_model
from recbole_micro.utils import get_trainer
config, model, dataset, train, valid, test = load_data_and_model(sys.argv[1])
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
result = trainer.evaluate(test, load_best_model=False)
print(json.dumps({"before": before, "after": np.float is np.float64 and np.int is np.int_,
                  "test": {k: float(v) for k, v in result.items()}}))
"""


@pytest.fixture(scope="module")
def bpr_run(tmp_path_factory):
    """A 2-epoch BPR run on a small generated dataset: ``(root, result)``."""
    from recbole_micro.quick_start import run_recbole_micro

    def train(root):
        return run_recbole_micro(model="BPR", dataset="syn", config_dict=run_config(root, epochs=2, eval_step=1))

    return train_on_synthetic(tmp_path_factory, "compat-bpr", dict(n_users=40, n_items=50, n_clusters=5,
                                                                  per_user=(6, 10)), train)


def test_checkpoint_reloads_and_evaluates_in_a_fresh_process(bpr_run, tmp_path):
    """A process that only loads a checkpoint (no Config built) gets RecBole's aliases and reproduces the
    training run's test metrics."""
    _, result = bpr_run
    done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, result["checkpoint"]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=child_env())
    assert done.returncode == 0, done.stderr[-3000:]
    fresh = json.loads(done.stdout.strip().splitlines()[-1])
    assert fresh["before"] is False and fresh["after"] is True
    assert fresh["test"] == {k: float(v) for k, v in result["test_result"].items()}


def test_checkpoint_holds_no_numpy_object_so_it_loads_under_either_numpy_major(bpr_run):
    """numpy 1 pickles its scalars as ``numpy.core.multiarray.scalar``, numpy 2 as ``numpy._core...``, so a
    pickled numpy object would tie a checkpoint to one numpy major. Checkpoints are data only (plain
    Python numbers, strings, lists, dicts and tensors): no global at all, under either name."""
    import zipfile

    from recbole_micro.quick_start import load_data_and_model
    from recbole_micro.utils import get_trainer

    _, result = bpr_run
    assert torch.serialization.get_unsafe_globals_in_checkpoint(result["checkpoint"]) == []
    with zipfile.ZipFile(result["checkpoint"]) as source:
        pickles = [source.read(i.filename) for i in source.infolist() if i.filename.endswith("/data.pkl")]
    assert pickles and not any(b"numpy.core" in data or b"numpy._core" in data for data in pickles)
    config, model, _, _, _, test = load_data_and_model(result["checkpoint"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert trainer.evaluate(test, load_best_model=False) == result["test_result"]


# ----------------------------------------------------------------------------------- hyperopt 0.2.7
def test_exhaustive_search_visits_every_grid_point_once(capsys):
    """RecBole's HyperTuning with algo='exhaustive' evaluates each point of a 2 x 2 grid exactly once
    and keeps the best (a stub objective: no training)."""
    from recbole.trainer import HyperTuning

    seen = []

    def objective(config_dict, config_file_list=None):
        seen.append((config_dict["a"], config_dict["b"]))
        score = 10.0 * config_dict["a"] + config_dict["b"]
        return {"model": "stub", "best_valid_score": score, "valid_score_bigger": True,
                "best_valid_result": {"score": score}, "test_result": {"score": score}}

    tuner = HyperTuning(objective, params_dict={"choice": {"a": [1, 2], "b": [0, 5]}}, algo="exhaustive",
                        early_stop=100)
    assert tuner.max_evals == 4
    tuner.run()
    assert sorted(seen) == [(1, 0), (1, 5), (2, 0), (2, 5)]
    assert tuner.best_params == {"a": 2, "b": 5} and tuner.best_score == 25.0
    if NEW["hyperopt>=0.2.7"]:
        from hyperopt import Trials, fmin

        from recbole.trainer import hyper_tuning

        with pytest.raises(AttributeError, match="integers"):
            fmin(tuner.trial, tuner.space, algo=original(hyper_tuning.exhaustive_search), max_evals=1,
                 trials=Trials(), show_progressbar=False, rstate=np.random.default_rng(0))


def test_plugin_exhaustive_search_with_two_points(tmp_path, synthetic):
    """The plugin's search (``tune_model``, hyperopt) over 2 points: both trained, best by validation."""
    from recbole_micro.tools.export import load_export
    from recbole_micro.tools.search import tune_model

    name = synthetic("syn", n_users=40, n_items=50, n_clusters=5, per_user=(6, 10))
    grid = tmp_path / "grid.hyper"
    grid.write_text("learning_rate choice [0.001, 0.05]\n")
    out = tmp_path / "tune" / "bpr"
    tune_model("BPR", name, str(grid), "exhaustive", output_file=str(out),
               overrides=run_config(tmp_path, epochs=1, eval_step=1))
    doc = load_export(str(out) + ".json")
    assert sorted(t["params"]["learning_rate"] for t in doc["trials"]) == [0.001, 0.05]
    assert all(t["status"] == "ok" for t in doc["trials"])
    best = max(doc["trials"], key=lambda t: t["best_valid_score"])
    assert doc["best"]["best_valid_score"] == best["best_valid_score"]


def test_hyperopt_rstate_matches_fmin():
    """``compat.hyperopt_rstate``: the seed object this hyperopt's ``fmin`` takes, reproducible by seed."""
    state = compat.hyperopt_rstate(3)
    assert isinstance(state, np.random.Generator if NEW["hyperopt>=0.2.7"] else np.random.RandomState)
    draw = (lambda s: s.integers(0, 10**9) if hasattr(s, "integers") else s.randint(0, 10**9))
    assert draw(compat.hyperopt_rstate(3)) == draw(state)


# ----------------------------------------------------------------------------------- setuptools 81 / Ray
PKG_RESOURCES = r"""
import json
import recbole_micro, numpy, pkg_resources
from pkg_resources import packaging
parse = packaging.version.parse
missing = False
try:
    pkg_resources.get_distribution("no-such-distribution-recbole-micro")
except pkg_resources.DistributionNotFound:
    missing = True
print(json.dumps({"numpy": pkg_resources.get_distribution("numpy").version, "own": numpy.__version__,
                  "require": pkg_resources.require("numpy")[0].version, "missing": missing,
                  "order": parse("2.10") > parse("2.9") and packaging.version.parse("1.0") < parse("1.1"),
                  "standin": getattr(pkg_resources, "STANDIN", False), "file": pkg_resources.__file__}))
"""


def test_pkg_resources_api_that_ray_calls(tmp_path):
    """``import pkg_resources`` works after ``import recbole_micro`` (setuptools' own, or the stand-in
    when setuptools >= 81 removed it) and answers what Ray 2.6 asks."""
    done = subprocess.run([sys.executable, "-c", PKG_RESOURCES], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=child_env())
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads(done.stdout.strip().splitlines()[-1])
    assert info["numpy"] == info["own"] == info["require"] and info["missing"] and info["order"]
    assert info["standin"] == NEW["setuptools>=81"]
    if NEW["setuptools>=81"]:
        assert info["file"].startswith(compat.STANDIN_PATH)
        from pkg_resources._vendor.packaging.version import parse  # Ray's function-level import

        assert parse("2.10") > parse("2.9")
        assert compat.STANDIN_PATH in os.environ["PYTHONPATH"].split(os.pathsep)  # for Ray's workers


def test_wheel_ships_the_pkg_resources_standin(tmp_path):
    """A normal (non-editable) install carries the stand-in (package data, not a subpackage)."""
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, env=child_env())
    names = zipfile.ZipFile(next(tmp_path.glob("recbole_micro-*.whl"))).namelist()
    assert "recbole_micro/_standin/pkg_resources/__init__.py" in names and "recbole_micro/compat.py" in names


def test_standin_defers_to_a_real_pkg_resources(tmp_path):
    """On a path that also holds a real ``pkg_resources`` (a child of another environment inheriting
    PYTHONPATH), importing the stand-in loads the real one."""
    real = tmp_path / "real" / "pkg_resources"
    real.mkdir(parents=True)
    (real / "__init__.py").write_text("WHO = 'real'\n")
    env = dict(child_env(), PYTHONPATH=os.pathsep.join([compat.STANDIN_PATH, str(tmp_path / "real")]))
    done = subprocess.run([sys.executable, "-c", "import pkg_resources; print(pkg_resources.WHO)"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "real", done.stderr[-2000:]


def test_ray_imports_and_tunes_with_two_workers_from_the_command_line(tmp_path, synthetic):
    """``run_hyper.py --tool ray --ray_workers 2``: Ray starts, both workers import ray.tune and train a trial
    each. Ray is optional (skipped without it); where it is installed, an import failure is a failure."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray is not installed (optional; the no-Ray path: tests/test_ray_optional.py)")
    import ray  # noqa: F401 - installed: an import failure is a failure here, not a skip
    import ray.tune  # noqa: F401

    name = synthetic("syn", n_users=40, n_items=50, n_clusters=5, per_user=(6, 10))
    grid = tmp_path / "grid.hyper"
    grid.write_text("learning_rate choice [0.001, 0.05]\n")
    out = tmp_path / "tune" / "bpr-ray"
    argv = [sys.executable, str(REPO / "run_hyper.py"), "--model", "BPR", "--dataset", name, "--tool", "ray",
            "--ray_workers", "2", "--params_file", str(grid), "--output_file", str(out)]
    argv += [f"--{k}={v}" for k, v in run_config(tmp_path, epochs=1, eval_step=1).items()]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=480, env=child_env())
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    doc = json.loads(Path(str(out) + ".json").read_text())
    assert doc["tool"] == "ray" and doc["status"] == "finished"
    assert sorted(t["params"]["learning_rate"] for t in doc["trials"]) == [0.001, 0.05]
    assert all(t["status"] == "ok" and "recall@20" in t["test"] for t in doc["trials"]), doc["trials"]


# ----------------------------------------------------------------------------------- runs at once
def test_two_runs_creating_one_folder_at_once(tmp_path, monkeypatch):
    """RecBole's ``ensure_dir`` looks, then creates: when another run creates the folder in between (Ray trials
    or side-by-side jobs sharing ``checkpoint_dir``) the second run died with FileExistsError (a Ray trial of
    ``tests/test_ray_optional.py`` did, 2 times in 8). Every module that bound the function has the fix."""
    import recbole.data.dataset.dataset as dataset
    import recbole.data.utils as data_utils
    import recbole.trainer.trainer as trainer
    import recbole.utils as utils
    import recbole.utils.logger as logger
    import recbole.utils.utils as utils_utils

    folder = tmp_path / "saved"
    real_exists = os.path.exists

    def another_run_creates_it_after_the_look(path):
        if str(path) == str(folder):
            os.makedirs(folder, exist_ok=True)
            return False
        return real_exists(path)

    monkeypatch.setattr(os.path, "exists", another_run_creates_it_after_the_look)
    with pytest.raises(FileExistsError):  # RecBole's own function, so the fix is no dead code
        original(trainer.ensure_dir)(str(folder))
    for module in (utils_utils, utils, logger, trainer, data_utils, dataset):
        assert compat.fixed_by(module.ensure_dir) == "runs at once", module.__name__
        module.ensure_dir(str(folder))  # there already (created by "another run")
        module.ensure_dir(str(folder / "a" / "b"))  # creates the parents too, as RecBole's does
        assert (folder / "a" / "b").is_dir()
        shutil.rmtree(folder / "a")


# ----------------------------------------------------------------------------------- lightgcn speed
def test_lightgcn_speed_fix_trains_to_the_same_weights(tmp_path, synthetic, monkeypatch):
    """``LightGCN.forward`` on the cached CSR products: 3 layers, an epoch of Adam steps (7 BPR batches) and the full
    ranking give what RecBole's own forward gives (same weights, losses and scores: to the bit where the CPU's
    sparse kernels sum in the same order, as on AVX-512; within float32 rounding otherwise, ≈ 1e-7 on the loss
    and 1e-6 on the weights after 7 steps on AVX2), and its graph is coalesced once and kept. The speed (≈ 2× per
    batch) is measured by ``benchmarks/lightgcn_speed.py``."""
    from recbole.data import data_preparation
    from recbole.model.general_recommender.lightgcn import LightGCN
    from recbole.utils import init_seed
    from recbole_micro.config import Config
    from recbole_micro.utils import create_dataset, get_model

    assert compat.fixed_by(LightGCN.forward) == "lightgcn speed"
    name = synthetic("syn", n_users=60, n_items=80, n_clusters=6, per_user=(6, 12))
    config = Config(model="LightGCN", dataset=name, config_dict=run_config(tmp_path, n_layers=3, reg_weight=1e-4,
                                                                             train_batch_size=64))
    train, _, test = data_preparation(config, create_dataset(config))
    batches, users = list(train), next(iter(test))[0]  # the same batches for both

    def run(forward):
        monkeypatch.setattr(LightGCN, "forward", forward)
        init_seed(7, True)
        model = get_model("LightGCN")(config, train._dataset)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        losses = []
        for batch in batches:
            optimizer.zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            scores = model.full_sort_predict(users)
        return model, losses, scores

    fast, fast_losses, fast_scores = run(LightGCN.forward)
    own, own_losses, own_scores = run(original(LightGCN.forward))
    assert len(fast_losses) == 7
    torch.testing.assert_close(torch.tensor(fast_losses), torch.tensor(own_losses), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(fast_scores, own_scores, rtol=1e-5, atol=1e-6)
    for (key, a), (_, b) in zip(fast.state_dict().items(), own.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=key)
    assert fast.norm_adj_matrix.is_coalesced() and not own.norm_adj_matrix.is_coalesced()
    torch.testing.assert_close(fast.norm_adj_matrix.to_dense(), own.norm_adj_matrix.to_dense(), rtol=0, atol=0)
