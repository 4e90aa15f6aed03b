"""Feature alignment after RecBole's remapping: row i of ``dataset.modality_features[m]`` belongs to
the item with internal id i, checked through tokens, with feature atoms in shuffled order and
non-numeric item tokens; missing and surplus feature rows; baselines see the same items."""

import os
import re

import numpy as np
import pytest
import torch

from conftest import run_config
from recbole_micro.config import Config
from recbole_micro.data.convert import write_dataset
from recbole_micro.errors import FeatureError
from recbole_micro.utils import create_dataset

N_USERS, N_ITEMS = 25, 18
DIMS = {"image": 7, "text": 5}


def source():
    """Interactions (user, item) with string tokens and one distinct feature vector per item token."""
    rng = np.random.default_rng(11)
    items = [f"itm-{chr(97 + i % 26)}{i * 7919 % 1000:03d}x" for i in range(N_ITEMS)]
    users = [f"usr_{u:02d}q" for u in range(N_USERS)]
    splits = {"train": [], "valid": [], "test": []}
    for u, user in enumerate(users):
        chosen = rng.choice(N_ITEMS, 5, replace=False)
        for item in chosen[:3]:
            splits["train"].append((user, items[item]))
        splits["valid"].append((user, items[chosen[3]]))
        splits["test"].append((user, items[chosen[4]]))
    # every item occurs in some interaction
    used = {i for pairs in splits.values() for _, i in pairs}
    for k, item in enumerate(sorted(set(items) - used)):
        splits["train"].append((users[k % N_USERS], item))
    features = {m: {t: rng.normal(size=d).astype(np.float32) for t in items} for m, d in DIMS.items()}
    return items, splits, features


def write(tmp_path, name, splits, features, tokens, extra_yaml=""):
    """Write the dataset with the feature rows of ``tokens`` in that order (shuffled by the caller)."""
    matrices = {m: np.stack([features[m][t] for t in tokens]) for m in DIMS}
    yaml_text = f"modalities: [{', '.join(DIMS)}]\nbenchmark_filename: [train, valid, test]\n{extra_yaml}"
    write_dataset(str(tmp_path), name, splits, matrices, yaml_text, overwrite=True, feature_tokens=tokens)
    return name


def load(tmp_path, name, model="MICRO", **overrides):
    config = Config(model=model, dataset=name, config_dict=run_config(tmp_path, **overrides))
    return create_dataset(config)


def shuffled(tokens, seed):
    order = np.random.default_rng(seed).permutation(len(tokens))
    return [tokens[i] for i in order]


def test_rows_follow_internal_ids_through_tokens(tmp_path):
    items, splits, features = source()
    tokens = shuffled(items, seed=0)
    assert tokens != sorted(tokens) and tokens != items
    dataset = load(tmp_path, write(tmp_path, "align", splits, features, tokens))
    assert dataset.item_num == N_ITEMS + 1
    # the atom's row order is not the internal id order: reading rows positionally would misalign
    assert list(dataset.field2id_token["item_id"][1:]) != tokens
    for m, dim in DIMS.items():
        matrix = dataset.modality_features[m]
        assert matrix.dtype == torch.float32 and matrix.shape == (N_ITEMS + 1, dim)
        for i in range(1, dataset.item_num):
            token = dataset.id2token("item_id", i)
            assert np.array_equal(matrix[i].numpy(), features[m][token]), (m, i, token)
        # [PAD] row: finite, the mean of the real rows
        assert torch.isfinite(matrix[0]).all()
        np.testing.assert_allclose(matrix[0].numpy(), np.mean([features[m][t] for t in items], axis=0), rtol=1e-6, atol=1e-7)


def test_missing_rows_get_the_mean_and_error_rule_raises(tmp_path):
    items, splits, features = source()
    missing = {items[2], items[9], items[15]}
    tokens = shuffled([t for t in items if t not in missing], seed=1)
    name = write(tmp_path, "missing", splits, features, tokens)
    dataset = load(tmp_path, name)
    assert dataset.item_num == N_ITEMS + 1  # items without features are kept
    for m in DIMS:
        matrix = dataset.modality_features[m].numpy()
        mean = np.mean([features[m][t] for t in tokens], axis=0)
        for i in range(1, dataset.item_num):
            token = dataset.id2token("item_id", i)
            if token in missing:
                np.testing.assert_allclose(matrix[i], mean, rtol=1e-6, atol=1e-7)
            else:
                assert np.array_equal(matrix[i], features[m][token])
        assert np.isfinite(matrix).all()

    path = os.path.join(str(tmp_path), name, f"{name}.image")
    with pytest.raises(FeatureError, match=re.escape(path)) as info:
        load(tmp_path, name, missing_feature="error")
    assert "3 items" in str(info.value)
    assert any(t in str(info.value) for t in missing)


def test_feature_rows_of_unknown_items_are_dropped(tmp_path):
    items, splits, features = source()
    strangers = ["ghost-1", "ghost-2", "zz-unseen"]
    rng = np.random.default_rng(5)
    for m, d in DIMS.items():
        for t in strangers:
            features[m][t] = rng.normal(size=d).astype(np.float32) * 100  # would shift a mean visibly
    plain_tokens = shuffled(items, seed=2)
    with_extra = list(plain_tokens)
    for pos, t in zip([0, 7, len(with_extra)], strangers):
        with_extra.insert(pos, t)
    plain = load(tmp_path, write(tmp_path, "plain", splits, features, plain_tokens))
    extra = load(tmp_path, write(tmp_path, "extra", splits, features, with_extra))
    assert extra.item_num == plain.item_num == N_ITEMS + 1
    assert not set(strangers) & set(extra.field2id_token["item_id"])
    assert list(extra.field2id_token["item_id"]) == list(plain.field2id_token["item_id"])
    for m in DIMS:
        assert torch.equal(extra.modality_features[m], plain.modality_features[m])


@pytest.mark.parametrize("baseline", ["BPR", "LightGCN"])
def test_baselines_see_the_same_items_and_ids(tmp_path, baseline):
    items, splits, features = source()
    # one item without features and one surplus feature row: both rules apply
    tokens = shuffled([t for t in items if t != items[4]], seed=3)
    features["image"]["orphan"] = np.ones(DIMS["image"], np.float32)
    features["text"]["orphan"] = np.ones(DIMS["text"], np.float32)
    name = write(tmp_path, "base", splits, features, tokens + ["orphan"])
    micro = load(tmp_path, name, "MICRO")
    base = load(tmp_path, name, baseline)
    assert base.item_num == micro.item_num == N_ITEMS + 1
    assert base.user_num == micro.user_num == N_USERS + 1
    assert list(base.field2id_token["item_id"]) == list(micro.field2id_token["item_id"])
    assert list(base.field2id_token["user_id"]) == list(micro.field2id_token["user_id"])
    assert base.inter_num == micro.inter_num
    for m in DIMS:
        assert torch.equal(base.modality_features[m], micro.modality_features[m])
