"""Tied scores in a full ranking (``recbole_micro/ties.py``): ``tie_break: random`` ranks equal scores in a
random order instead of by item id, changes nothing where no two scores tie, and draws its order from the
seed (and the epoch while training) without touching the training's random streams."""

import numpy as np
import pytest
import torch
from recbole.evaluator import Collector

from conftest import benchmark_script, run_config
from recbole_micro.errors import ConfigError
from recbole_micro.quick_start import build, run_recbole_micro
from recbole_micro.collector import EvalCollector
from recbole_micro.ties import tie_order

ITEM_METRICS = ["ItemCoverage", "AveragePopularity", "GiniIndex", "ShannonEntropy", "TailPercentage"]
SMALL = dict(n_users=40, n_items=60, n_clusters=5, per_user=(6, 10), dims={"image": 12, "text": 6})


def _config(tmp_path, **overrides):
    return run_config(tmp_path, **{"epochs": 2, "eval_step": 1, "stopping_step": 10, "seed": 3, **overrides})


def test_the_collector_ranks_the_permuted_columns_and_maps_items_back(tmp_path, synthetic):
    """``EvalCollector`` is RecBole's ``Collector`` run on the score columns in the drawn order, with the
    positives moved to their columns and the returned top-k columns mapped back to item ids."""
    name = synthetic("syn", **SMALL)
    config, model, _, _ = build("BPR", name, config_dict=_config(tmp_path, metrics=["Recall", "NDCG", "ItemCoverage"]))
    n_items = model.n_items
    scores = torch.from_numpy(np.random.default_rng(0).integers(0, 3, size=(6, n_items))).float()  # many ties
    scores[:, 0] = -np.inf  # [PAD], as RecBole's full sort
    positive_u = torch.tensor([0, 0, 1, 2, 3, 3, 3, 4, 5])
    positive_i = torch.tensor([1, 2, 7, 59, 3, 30, 44, 12, 5])
    order = tie_order(n_items, config["seed"])
    ties, plain = EvalCollector(config), Collector(config)
    ties.set_order(order, torch.device("cpu"))
    ties.eval_batch_collect(scores, None, positive_u, positive_i)
    plain.eval_batch_collect(scores[:, order], None, positive_u, torch.argsort(order)[positive_i])
    drawn, reference = ties.get_data_struct(), plain.get_data_struct()
    assert torch.equal(drawn["rec.topk"], reference["rec.topk"])
    assert torch.equal(drawn["rec.items"], order[reference["rec.items"]])
    top = drawn["rec.items"]
    assert torch.equal(scores.gather(1, top), scores.topk(top.shape[1]).values)  # the K best scores, in order
    ties.set_order(None, torch.device("cpu"))  # no order: RecBole's collector exactly
    ties.eval_batch_collect(scores, None, positive_u, positive_i)
    plain.eval_batch_collect(scores, None, positive_u, positive_i)
    assert torch.equal(ties.get_data_struct()["rec.topk"], plain.get_data_struct()["rec.topk"])


def test_without_ties_both_orders_give_the_same_metrics_to_the_bit(tmp_path, synthetic):
    """Trained scores (no two equal): the top K and their order are the same, so every metric is — RecBole's
    item metrics too (AveragePopularity reads the returned ids, mapped back from the permuted columns)."""
    name = synthetic("syn", **SMALL)
    metrics = ["Recall", "NDCG", "Precision", "Hit", "MRR"] + ITEM_METRICS
    runs = {mode: run_recbole_micro("LightGCN", name, config_dict=_config(
        tmp_path, checkpoint_dir=str(tmp_path / mode), tie_break=mode, metrics=metrics))
        for mode in ("index", "random")}
    assert runs["random"]["test_result"] == runs["index"]["test_result"]
    assert runs["random"]["best_valid_result"] == runs["index"]["best_valid_result"]
    assert runs["random"]["best_valid_score"] == runs["index"]["best_valid_score"]
    result = runs["random"]["test_result"]
    assert 0 < result["recall@20"] < 1 and 0 < result["itemcoverage@10"] <= 1 and result["averagepopularity@10"] > 1


def test_recboles_item_metrics_evaluate_instead_of_failing(tmp_path, synthetic):
    """RecBole 1.2.1's own collector moves every entry to the CPU, the training data's item counts too, and
    stops; the plugin's hands those over as they are, and the item metrics come out as RecBole defines them."""
    name = synthetic("syn", **SMALL)
    config, model, trainer, (train_data, _, test_data) = build("BPR", name, config_dict=_config(
        tmp_path, metrics=["Recall"] + ITEM_METRICS))
    plain = Collector(config)
    plain.data_collect(train_data)
    with pytest.raises(AttributeError, match="'int' object has no attribute 'cpu'"):
        plain.get_data_struct()
    trainer.eval_collector.data_collect(train_data)  # as RecBole's fit does
    result = trainer.evaluate(test_data, load_best_model=False)
    # ItemCoverage@10 = distinct items in the users' top 10 / items (RecBole's definition), recomputed from BPR's
    # own scores with each user's history masked
    users = test_data.uid_list
    with torch.no_grad():
        scores = model.get_user_embedding(users) @ model.item_embedding.weight.T
    for row, uid in enumerate(users.tolist()):
        scores[row, test_data.uid2history_item[uid]] = -np.inf
    scores[:, 0] = -np.inf
    distinct = torch.unique(scores.topk(10, dim=1).indices).numel()
    assert result["itemcoverage@10"] == round(distinct / train_data.dataset.item_num, 4)
    assert 0 <= result["giniindex@10"] <= 1 and result["shannonentropy@10"] > 0 and result["averagepopularity@10"] > 1


def test_ties_check_reads_a_checkpoint_under_both_orders(tmp_path, synthetic):
    """``benchmarks/ties_check.py``: a model without tied scores reads the same under both orders, and the
    run's own valid and test Recall@20 (it ran with ``random``)."""
    name = synthetic("syn", **SMALL)
    run = run_recbole_micro("BPR", name, config_dict=_config(tmp_path))
    model, seed, values = benchmark_script("ties_check").rescore(run["checkpoint"])
    assert (model, seed) == ("BPR", 3)
    for order in ("index", "random"):
        assert values[order, "valid"] == run["best_valid_result"]["recall@20"]
        assert values[order, "test"] == run["test_result"]["recall@20"]


def test_each_validation_draws_its_own_order_and_later_evaluations_one_fixed_order(tmp_path, synthetic):
    """With every score tied, validation varies from epoch to epoch as a random ranking does (a flat curve is
    not frozen at one order, so early stopping ends it); evaluations outside training repeat exactly; the
    training's random streams are untouched (the trained weights equal ``index``'s)."""
    assert torch.equal(tie_order(50, 3, 4), tie_order(50, 3, 4))
    assert not torch.equal(tie_order(50, 3, 4), tie_order(50, 3, 5))
    assert not torch.equal(tie_order(50, 3), tie_order(50, 4))
    name = synthetic("syn", **SMALL)
    weights, valid = {}, {}
    for mode in ("index", "random"):
        config, model, trainer, (train_data, valid_data, test_data) = build(
            "BPR", name, config_dict=_config(tmp_path, checkpoint_dir=str(tmp_path / mode), epochs=4, tie_break=mode))
        scores = []
        original = model.full_sort_predict
        model.full_sort_predict = lambda interaction: torch.zeros_like(original(interaction))  # trains as usual
        trainer.fit(train_data, valid_data, saved=False, callback_fn=lambda epoch, score: scores.append(score))
        weights[mode], valid[mode] = model.user_embedding.weight.detach().clone(), scores
        once, again = (trainer.evaluate(test_data, load_best_model=False) for _ in range(2))
        assert once == again
    assert torch.equal(weights["index"], weights["random"])
    assert len(set(valid["index"])) == 1  # by item id: the same ranking at every validation
    assert len(set(valid["random"])) > 1


def test_an_unknown_tie_break_stops_before_training(tmp_path, synthetic):
    name = synthetic("syn", **SMALL)
    with pytest.raises(ConfigError) as info:
        build("MICRO", name, config_dict=_config(tmp_path, tie_break="first"))
    assert str(info.value) == ("config key 'tie_break' is 'first'; use one of ['random', 'index'] (random: equal "
                               "scores in a random order; index: RecBole's order, by item id)")


def test_recommend_ranks_tied_scores_in_the_checkpoints_order(tmp_path, synthetic):
    """``recommend`` follows the checkpoint's ``tie_break``: with every score tied, ``random`` lists the items
    the seed's permutation puts first (the top-k of the permuted columns, mapped back), ``index`` RecBole's."""
    from recbole_micro.quick_start import load_data_and_model
    from recbole_micro.recommend import recommend

    name = synthetic("syn", **SMALL)
    run = run_recbole_micro("BPR", name, config_dict=_config(tmp_path))
    trained = recommend(run["checkpoint"], ["1", "8"], topk=5)
    loaded = load_data_and_model(run["checkpoint"])
    config, model, dataset = loaded[:3]
    assert recommend(run["checkpoint"], ["1", "8"], topk=5, loaded=loaded) == trained  # no ties: as before
    model.full_sort_predict = lambda interaction: torch.zeros(len(interaction[model.USER_ID]) * model.n_items)
    listed = {}
    for mode in ("random", "index"):
        config["tie_break"] = mode
        listed[mode] = [r["items"] for r in recommend(run["checkpoint"], ["1", "8"], topk=5, loaded=loaded)]
    order = tie_order(model.n_items, config["seed"])
    history = loaded[4].uid2history_item  # exclude="train": the validation loader's history
    for row, token in enumerate(["1", "8"]):
        scores = torch.zeros(model.n_items)
        scores[history[int(dataset.token2id(dataset.uid_field, token))]] = -np.inf
        scores[0] = -np.inf
        expected = order[torch.topk(scores[order], 5).indices]
        assert listed["random"][row] == [str(t) for t in dataset.id2token(dataset.iid_field, expected.numpy())]
        by_id = torch.topk(scores, 5).indices
        assert listed["index"][row] == [str(t) for t in dataset.id2token(dataset.iid_field, by_id.numpy())]
    assert listed["random"] != listed["index"]
