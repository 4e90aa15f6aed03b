"""The reference's training batches (``recbole_micro.data.sampler``, ``train_sampler: user``): distinct
uniform users per step, a positive of each user's training items and a negative outside them,
``n_train // batch + 1`` steps; the rule for a batch above the user count; pointwise models; cold
start; random state that resumes; disjoint users per process with DDP."""

import logging
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from conftest import run_config
from recbole_micro.checkpoint import rng_state, set_rng_state
from recbole_micro.data.sampler import UserSampleTrainDataLoader, train_dataloader
from recbole_micro.errors import ConfigError
from recbole_micro.quick_start import build

BATCH = 64


def loader(tmp_path, name, model="BPR", **overrides):
    """The training loader of ``model`` under the reference's sampler (any model can take it; only MICRO and
    LATTICE default to it)."""
    config = run_config(tmp_path, **{"train_batch_size": BATCH, "epochs": 1, "train_sampler": "user", **overrides})
    config, _, _, (train_data, valid_data, test_data) = build(model, name, config_dict=config, quiet=True)
    return config, train_data


def training_pairs(train_data):
    dataset = train_data._dataset
    users = dataset.inter_feat[dataset.uid_field].numpy()
    items = dataset.inter_feat[dataset.iid_field].numpy()
    by_user = {}
    for u, i in zip(users, items):
        by_user.setdefault(int(u), set()).add(int(i))
    return by_user


def corrected_chi_square(counts, p):
    """Uniformity of per-user draw counts over S steps of k distinct users out of U: each count is
    Binomial(S, p = k/U), so sum (O - E)^2 / (E (1 - p)) is approximately chi-square with U - 1 d.o.f."""
    counts = np.asarray(counts, dtype=float)
    expected = counts.mean()
    statistic = ((counts - expected) ** 2).sum() / (expected * (1.0 - p))
    return stats.chi2.sf(statistic, len(counts) - 1)


@pytest.fixture
def syn(synthetic):
    return synthetic("sampled", n_users=300, n_items=400, per_user=(3, 20), seed=3)


# ------------------------------------------------------------------------------ one epoch
def test_one_epoch_of_the_user_sampler(tmp_path, syn):
    config, train_data = loader(tmp_path, syn)
    assert isinstance(train_data, UserSampleTrainDataLoader) and config["train_sampler"] == "user"
    pairs = training_pairs(train_data)
    n_train = len(train_data._dataset)
    batches = list(train_data)
    assert len(batches) == len(train_data) == n_train // BATCH + 1
    for batch in batches:
        # the fields RecBole's pairwise TrainDataLoader gives
        assert {"user_id", "item_id", "neg_item_id"} <= set(batch.columns)
        users, pos, neg = (batch[k].tolist() for k in ("user_id", "item_id", "neg_item_id"))
        assert len(users) == BATCH and len(set(users)) == BATCH  # distinct users
        assert all(i in pairs[u] for u, i in zip(users, pos))  # a training item of its user
        assert all(j not in pairs[u] and 0 < j < train_data._dataset.item_num for u, j in zip(users, neg))


def test_users_positives_and_negatives_are_uniform(tmp_path, syn):
    _, train_data = loader(tmp_path, syn)
    pairs = training_pairs(train_data)
    users = np.array(sorted(pairs))
    user_counts = dict.fromkeys(users.tolist(), 0)
    pos_counts, neg_counts, steps = {}, np.zeros(train_data._dataset.item_num), 0
    for _ in range(40):  # epochs
        for batch in train_data:
            steps += 1
            for u, i, j in zip(*(batch[k].tolist() for k in ("user_id", "item_id", "neg_item_id"))):
                user_counts[u] += 1
                pos_counts[(u, i)] = pos_counts.get((u, i), 0) + 1
                neg_counts[j] += 1
    # users: uniform among those with training items, whatever their number of interactions
    p = BATCH / len(users)
    assert corrected_chi_square(list(user_counts.values()), p) > 1e-3
    # the same test rejects RecBole's draw, where a user's share follows her interaction count
    interactions = np.array([len(pairs[u]) for u in users], dtype=float)
    recbole_like = interactions / interactions.sum() * sum(user_counts.values())
    assert corrected_chi_square(recbole_like, p) < 1e-6
    # positives: uniform among each user's training items (pooled chi-square given the user's count)
    statistic, dof = 0.0, 0
    for u in users:
        items = sorted(pairs[u])
        observed = np.array([pos_counts.get((u, i), 0) for i in items], dtype=float)
        expected = user_counts[u] / len(items)
        statistic += ((observed - expected) ** 2 / expected).sum()
        dof += len(items) - 1
    assert stats.chi2.sf(statistic, dof) > 1e-3
    # negatives: spread over the whole catalogue (every real item drawn, [PAD] never)
    assert neg_counts[0] == 0 and (neg_counts[1:] > 0).all()


def test_interaction_sampler_is_recboles(tmp_path, syn):
    from recbole.data.dataloader import TrainDataLoader

    _, train_data = loader(tmp_path, syn, train_sampler="interaction")
    assert type(train_data) is TrainDataLoader
    rows = sum(len(batch) for batch in train_data)
    assert rows == len(train_data._dataset)  # every training interaction once per epoch


def test_unknown_sampler_is_refused(tmp_path, syn):
    with pytest.raises(ConfigError) as info:
        loader(tmp_path, syn, train_sampler="users")
    message = str(info.value)
    assert "\n" not in message and "config key 'train_sampler' is 'users'" in message and "['user', 'interaction']" in message


# ------------------------------------------------------------------------------ rules beyond the reference
def test_batch_larger_than_the_users_draws_with_replacement(tmp_path, synthetic, caplog):
    name = synthetic("few", n_users=30, n_items=50, per_user=(5, 9), seed=2)
    config, train_data = loader(tmp_path, name, train_batch_size=100)
    logging.getLogger().addHandler(caplog.handler)  # build(quiet=True) removed it; the loader warns when made
    caplog.set_level(logging.WARNING)
    train_data = UserSampleTrainDataLoader(config, train_data._dataset, train_data._sampler)
    assert any("exceeds the 30 users with training interactions" in r.getMessage() for r in caplog.records)
    pairs = training_pairs(train_data)
    batches = list(train_data)
    assert len(batches) == len(train_data._dataset) // 100 + 1
    for batch in batches:
        users, pos = batch["user_id"].tolist(), batch["item_id"].tolist()
        assert len(users) == 100  # the configured batch, users repeated
        assert set(users) <= set(pairs) and len(set(users)) < 100
        assert all(i in pairs[u] for u, i in zip(users, pos))


def test_pointwise_model_gets_labelled_negatives(tmp_path, syn):
    """NeuMF (pointwise): each drawn user's positive (label 1) and RecBole's sampled negative (label 0)."""
    _, train_data = loader(tmp_path, syn, model="NeuMF")
    pairs = training_pairs(train_data)
    batch = next(iter(train_data))
    label = batch["label"]
    users, items = batch["user_id"], batch["item_id"]
    positives = label == 1
    assert len(batch) == BATCH and int(positives.sum()) == BATCH // 2
    assert len(set(users[positives].tolist())) == BATCH // 2
    assert all(i in pairs[u] for u, i in zip(users[positives].tolist(), items[positives].tolist()))
    assert all(i not in pairs[u] for u, i in zip(users[~positives].tolist(), items[~positives].tolist()))


def test_non_general_models_keep_recboles_loader(caplog):
    from recbole.utils import ModelType

    recbole_loader = object()
    with caplog.at_level(logging.WARNING):
        kept = train_dataloader({"train_sampler": "user", "MODEL_TYPE": ModelType.SEQUENTIAL, "model": "GRU4Rec"},
                                recbole_loader)
    assert kept is recbole_loader
    assert any("GRU4Rec (sequential) trains with RecBole's loader" in r.getMessage() for r in caplog.records)


def test_cold_start_negatives_include_cold_items(tmp_path, synthetic):
    """As the reference's randint(0, n_items): negatives range over every item without a training
    interaction of the user, cold items (no training interaction at all) included; positives never."""
    name = synthetic("coldish", n_users=200, n_items=300, cold_items=40, seed=4)
    _, train_data = loader(tmp_path, name)
    pairs = training_pairs(train_data)
    dataset = train_data._dataset
    warm = set(np.unique(dataset.inter_feat[dataset.iid_field].numpy()).tolist())
    cold = set(range(1, dataset.item_num)) - warm
    assert len(cold) == 40
    users, positives, negatives = set(), set(), set()
    for batch in train_data:
        users |= set(batch["user_id"].tolist())
        positives |= set(batch["item_id"].tolist())
        negatives |= set(batch["neg_item_id"].tolist())
    assert users <= set(pairs) and not positives & cold
    assert len(negatives & cold) > 20


# ------------------------------------------------------------------------------ resume
def test_loader_random_state_restores_the_same_batches(tmp_path, syn):
    """What a checkpoint saves (``rng_state`` with the loader's generator) replays an epoch exactly."""
    _, train_data = loader(tmp_path, syn)
    list(train_data)  # one epoch
    state = rng_state(train_data.generator)
    first = [tuple(b[k] for k in ("user_id", "item_id", "neg_item_id")) for b in train_data]
    list(train_data)  # the streams move on
    set_rng_state(state, train_data.generator)
    again = [tuple(b[k] for k in ("user_id", "item_id", "neg_item_id")) for b in train_data]
    assert len(first) == len(again)
    assert all(all(torch.equal(x, y) for x, y in zip(a, b)) for a, b in zip(first, again))


# ------------------------------------------------------------------------------ DDP
def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return str(s.getsockname()[1])


def _ddp_worker(rank, root, name, port, out):
    """One gloo process: the plugin's data pipeline up to the training loader; writes its epoch's users."""
    sys.argv = [sys.argv[0]]
    from recbole.data import data_preparation

    from recbole_micro.config import Config
    from recbole_micro.utils import create_dataset

    config = Config(model="BPR", dataset=name, config_dict=run_config(
        Path(root), train_batch_size=BATCH, world_size=2, local_rank=rank, ip="localhost", port=port, nproc=2,
        offset=0, train_sampler="user"))
    train_data, _, _ = data_preparation(config, create_dataset(config))
    train_data = train_dataloader(config, train_data)
    torch.save([batch["user_id"] for batch in train_data], Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_processes_get_disjoint_users_of_the_same_draw(tmp_path, syn):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    import torch.multiprocessing as mp

    _, single = loader(tmp_path, syn)
    one_process = [batch["user_id"] for batch in single]
    try:
        mp.spawn(_ddp_worker, args=(str(tmp_path), syn, _free_port(), str(tmp_path)), nprocs=2, join=True)
    except Exception as error:  # noqa: BLE001 - the sandbox may forbid the local TCP rendezvous
        if "Address already in use" in str(error) or "Connection refused" in str(error):
            pytest.skip(f"gloo could not start here: {error}")
        raise
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one_process)  # the same number of steps everywhere
    for u0, u1, together in zip(ranks[0], ranks[1], one_process):
        assert len(u0) == len(u1) == BATCH // 2
        assert not set(u0.tolist()) & set(u1.tolist())  # disjoint users
        assert sorted(u0.tolist() + u1.tolist()) == sorted(together.tolist())  # the one-process step, split


def test_each_model_defaults_to_its_native_sampler(tmp_path, syn):
    """MICRO and LATTICE train on the reference's batches, every other model on RecBole's own (its native one)."""
    from recbole_micro.config import Config

    samplers = {m: Config(m, syn, config_dict=run_config(tmp_path))["train_sampler"]
                for m in ("MICRO", "LATTICE", "BPR", "LightGCN", "VBPR", "FREEDOM")}
    assert samplers == {"MICRO": "user", "LATTICE": "user", "BPR": "interaction", "LightGCN": "interaction",
                        "VBPR": "interaction", "FREEDOM": "interaction"}
    _, train_data = loader(tmp_path, syn, train_sampler=None)  # unset: RecBole's loader
    assert not isinstance(train_data, UserSampleTrainDataLoader)
