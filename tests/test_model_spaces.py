"""Every shipped search space of the multimodal baselines (``properties/hyper/<Model>.hyper``: their authors' grids)
parses, searches keys of the model's resolved config, and each of its values builds the model."""

import pytest

from conftest import run_config
from recbole_micro.quick_start import build
from recbole_micro.tools.space import check_space, find_params_file, read_hyper_file
from recbole_micro.tools.values import known_keys, resolve_config

TINY_DATA = dict(n_users=30, n_items=18, n_clusters=3, per_user=(3, 6), seed=0)
EXTRA = {"FREEDOM": {"knn_k": 3}}  # k of the item graph below the 17 items of the tiny data


@pytest.mark.parametrize("model", ["FREEDOM", "LGMRec", "BPRReg"])
def test_shipped_search_space_names_real_keys_with_valid_values(tmp_path, synthetic, model):
    name = synthetic("syn", **TINY_DATA)
    spec = read_hyper_file(find_params_file(model))
    config = resolve_config(model, name, None, run_config(tmp_path))
    assert set(spec) == {"choice"} and check_space(spec, known_keys(config), model) == spec
    for key, values in spec["choice"].items():
        assert key in config.final_config_dict, key
        for value in values:  # each value passes the model's own checks
            build(model, name, config_dict=run_config(tmp_path, device="cpu", use_gpu=False,
                                                      **{**EXTRA.get(model, {}), key: value}))
