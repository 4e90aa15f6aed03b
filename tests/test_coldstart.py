"""Item cold-start protocol: the split (``recbole_micro.data.coldstart``), the converter flag, the
candidate-restricted evaluation (``recbole_micro.evaluation``) for every model, and what content buys:
MICRO ranks never-seen items from their features, BPR cannot."""

import copy
import json

import numpy as np
import pytest
import torch

from conftest import benchmark_script, run_config
from recbole_micro.data.__main__ import main as convert_main
from recbole_micro.data.coldstart import cold_start_dataset, cold_start_split
from recbole_micro.data.convert import ConversionError
from recbole_micro.data.default import lattice_split
from recbole_micro.data.synthetic import synthetic_features, synthetic_interactions
from recbole_micro.errors import ConfigError
from recbole_micro.evaluation import cold_candidate_mask, eval_candidates_mode, interacted_items
from recbole_micro.quick_start import build

SPLITS = ("train", "valid", "test")


def read_inter(path):
    with open(path, encoding="utf-8") as f:
        assert f.readline() == "user_id:token\titem_id:token\n"
        return [tuple(line.rstrip("\n").split("\t")) for line in f]


def generated_splits(n_users=200, n_items=300, n_clusters=10, seed=0):
    rng = np.random.default_rng(seed)
    user_items, clusters = synthetic_interactions(n_users, n_items, n_clusters, (8, 14), 0.9, rng)
    features = synthetic_features(clusters, {"image": 32, "text": 16}, 0.5, rng)
    return lattice_split(user_items, seed=seed), features


def check_cold_split(splits, new, cold, fraction):
    items = {i for pairs in splits.values() for _, i in pairs}
    held_out = set(cold["valid"]) | set(cold["test"])
    train_items = {i for _, i in new["train"]}
    # no training interaction for any held-out item; train keeps every other item
    assert not train_items & held_out
    assert train_items == items - held_out
    # every held-out item appears, with ALL its interactions, in its own split only
    assert {i for _, i in new["valid"]} == set(cold["valid"])
    assert {i for _, i in new["test"]} == set(cold["test"])
    assert not set(cold["valid"]) & set(cold["test"])
    # fraction as configured: int(f·n) items, the first half drawn to test
    assert len(held_out) == int(fraction * len(items))
    assert len(cold["test"]) == len(held_out) // 2
    # nothing lost, nothing duplicated
    pooled = {p for pairs in splits.values() for p in pairs}
    assert sorted(p for s in SPLITS for p in new[s]) == sorted(pooled)


# ------------------------------------------------------------------------------ the split
@pytest.mark.parametrize("fraction", [0.2, 0.35])
def test_cold_split_holds_out_items_entirely(fraction):
    splits, _ = generated_splits()
    new, cold = cold_start_split(splits, fraction=fraction, seed=5)
    check_cold_split(splits, new, cold, fraction)
    again, cold_again = cold_start_split(splits, fraction=fraction, seed=5)
    assert again == new and cold_again == cold  # deterministic
    assert cold_start_split(splits, fraction=fraction, seed=6)[1] != cold


def test_cold_split_is_the_reference_draw():
    """LATTICE's data/cold_start.py: np.random.seed(123); choice(n_items, int(0.2 n), replace=False);
    first half test, rest valid (items 0..n−1)."""
    splits = {"train": [("u1", i) for i in range(0, 50)], "valid": [("u2", i) for i in range(50, 80)],
              "test": [("u3", i) for i in range(80, 100)]}
    _, cold = cold_start_split(splits, 0.2, 123)
    np.random.seed(123)
    drawn = np.random.choice(100, 20, replace=False).tolist()
    assert cold["test"] == sorted(drawn[:10]) and cold["valid"] == sorted(drawn[10:])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 0.001])
def test_cold_split_refuses_bad_fractions(fraction):
    splits, _ = generated_splits(n_users=20, n_items=30)
    with pytest.raises(ConversionError, match="fraction"):
        cold_start_split(splits, fraction=fraction)


def write_lattice_source(folder, splits, features):
    (folder / "5-core").mkdir(parents=True)
    for split, file in (("train", "train.json"), ("valid", "val.json"), ("test", "test.json")):
        per_user = {}
        for user, item in splits[split]:
            per_user.setdefault(user, []).append(int(item))
        (folder / "5-core" / file).write_text(json.dumps(per_user))
    for modality, matrix in features.items():
        np.save(folder / f"{modality}_feat.npy", matrix)


def test_converter_flag_writes_cold_dataset(tmp_path):
    splits, features = generated_splits(n_users=60, n_items=80)
    src = tmp_path / "src"
    write_lattice_source(src, splits, features)
    out = tmp_path / "out"
    assert convert_main(["lattice", str(src), "--name", "c", "--cold-start", "0.25", "--seed", "9", "--out", str(out)]) == 0
    written = {s: read_inter(out / "c" / f"c.{s}.inter") for s in SPLITS}
    int_splits = {s: [(u, str(i)) for u, i in pairs] for s, pairs in splits.items()}
    _, cold = cold_start_split(int_splits, 0.25, 9)
    check_cold_split(int_splits, written, cold, 0.25)
    yaml = (out / "c" / "c.yaml").read_text()
    assert "eval_candidates: cold" in yaml and "benchmark_filename: [train, valid, test]" in yaml
    assert (out / "c" / "c.image").is_file() and (out / "c" / "c.text").is_file()
    # bad fraction: one line on stderr, exit status 2
    assert convert_main(["lattice", str(src), "--name", "d", "--cold-start", "1.5", "--out", str(out)]) == 2


def test_baby_cold_split(shared_data, tmp_path):
    """The real Baby data: 1,410 of 7,050 items held out (705 valid, 705 test), none in train."""
    assert convert_main(["lattice", str(shared_data / "baby"), "--name", "baby-cold", "--cold-start", "0.2",
                         "--out", str(tmp_path)]) == 0
    new = {s: read_inter(tmp_path / "baby-cold" / f"baby-cold.{s}.inter") for s in SPLITS}
    items = {s: {i for _, i in pairs} for s, pairs in new.items()}
    assert len(items["valid"]) == 705 and len(items["test"]) == 705
    assert not items["train"] & (items["valid"] | items["test"]) and not items["valid"] & items["test"]
    assert len(items["train"]) == 7050 - 1410
    assert sum(len(p) for p in new.values()) == 160792


# ------------------------------------------------------------------------------ evaluation
@pytest.fixture
def cold_data(tmp_path):
    """A generated cold-start dataset in which the features carry the signal (60 + 59 cold items)."""
    splits, features = generated_splits()
    _, cold = cold_start_dataset(str(tmp_path), "cold", splits, features, fraction=0.4, seed=1)
    return "cold", cold


def make(model, tmp_path, name, **overrides):
    config = run_config(tmp_path, device="cpu", use_gpu=False, learning_rate=0.01, train_batch_size=512,
                        epochs=2, eval_step=2, **overrides)
    return build(model, name, config_dict=config, quiet=True)


def internal_ids(dataset, tokens):
    return set(dataset.token2id(dataset.iid_field, [str(t) for t in tokens]).tolist())


def test_candidates_are_the_cold_items_of_each_split(cold_data, tmp_path):
    name, cold = cold_data
    config, _, trainer, (train_data, valid_data, test_data) = make("BPR", tmp_path, name)
    assert config["eval_candidates"] == "cold"
    dataset = train_data._dataset
    train_items = interacted_items(dataset)
    for split, loader in (("valid", valid_data), ("test", test_data)):
        mask = cold_candidate_mask(loader._dataset, train_items, dataset.item_num)
        assert set(torch.nonzero(mask).view(-1).tolist()) == internal_ids(dataset, cold[split])
        # the trainer finds the same set without fit() (from the sampler's training split)
        assert np.array_equal(trainer._training_items(loader), train_items)


def test_eval_candidates_key_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="eval_candidates"):
        eval_candidates_mode({"eval_candidates": "warm"})
    assert eval_candidates_mode({"eval_candidates": None}) == "all"


def fit_and_test(model, tmp_path, name, spy=None, **overrides):
    config, net, trainer, (train_data, valid_data, test_data) = make(model, tmp_path, name, **overrides)
    trainer.fit(train_data, valid_data, saved=False, verbose=False)
    if spy is not None:
        spy(trainer)
    return net, trainer, test_data, trainer.evaluate(test_data, load_best_model=False)


def test_micro_beats_bpr_on_cold_items_and_ranks_candidates_only(cold_data, tmp_path):
    name, cold = cold_data
    seen_top = []

    def spy(trainer):
        original = trainer._full_sort_batch_eval

        def recording(batched_data):
            out = original(batched_data)
            seen_top.append(out[1].topk(20, dim=1).indices)
            return out

        trainer._full_sort_batch_eval = recording

    _, _, _, bpr = fit_and_test("BPR", tmp_path, name)
    micro, trainer, test_data, result = fit_and_test("MICRO", tmp_path, name, spy=spy)
    chance = 20 / len(cold["test"])  # expected Recall@20 of a random ranking of the test cold items
    assert bpr["recall@20"] < chance + 0.1  # ID-only: near chance on items it never saw
    assert result["recall@20"] > 0.8 and result["recall@20"] > bpr["recall@20"] + 0.4

    # the top-k of every evaluated user holds test cold items only
    candidates = internal_ids(test_data._dataset, cold["test"])
    top = torch.cat(seen_top)
    assert top.shape == (len(test_data.uid_list), 20)
    assert set(top.view(-1).tolist()) <= candidates
    # without the restriction the same model ranks warm items too
    seen_top.clear()
    trainer.config["eval_candidates"] = "all"
    trainer.evaluate(test_data, load_best_model=False)
    assert not set(torch.cat(seen_top).view(-1).tolist()) <= candidates


@pytest.mark.parametrize("model_name", ["MICRO", "LATTICE"])
def test_cold_items_get_content_embeddings(cold_data, tmp_path, model_name):
    """Items with no training interaction are embedded from their features: h = A X_i is non-zero for
    them (through the feature kNN graph) and their scores vary across users and items."""
    name, cold = cold_data
    _, model, _, (train_data, _, _) = make(model_name, tmp_path, name)
    dataset = train_data._dataset
    cold_ids = torch.tensor(sorted(internal_ids(dataset, cold["test"])))
    model.eval()
    with torch.no_grad():
        out = model.forward()
        h = out[3] if model_name == "MICRO" else out[2]
        users, items = out[0], out[1]
    assert (h[cold_ids].norm(dim=1) > 1e-6).all()
    scores = users[1:] @ items[cold_ids].t()  # every real user × the cold items
    assert (scores.std(dim=0) > 1e-4).all()  # per cold item, not constant over users
    assert (scores.std(dim=1) > 1e-4).all()  # per user, the cold items are told apart


def test_chance_spread_of_a_random_global_list(tmp_path):
    """benchmarks/cold_chance.py: item weights equal RecBole's user-averaged Recall of the items, their sum is 1
    (every item listed = Recall 1), and random k-item lists average k / n."""
    import importlib.util

    from conftest import REPO
    spec = importlib.util.spec_from_file_location("cold_chance", REPO / "benchmarks" / "cold_chance.py")
    chance = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chance)
    path = tmp_path / "c.valid.inter"
    rows = [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u3", "c"), ("u3", "c")]  # u3's duplicate counts once
    path.write_text("user_id:token\titem_id:token\n" + "".join(f"{u}\t{i}\n" for u, i in rows))
    weights, users = chance.item_weights(str(path))
    assert users == 3 and weights.tolist() == pytest.approx([(1 / 2 + 1) / 3, (1 / 2) / 3, 1 / 3])  # a, b, c
    assert weights.sum() == pytest.approx(1.0)
    values = chance.random_list_recall(np.arange(1, 11) / 55, k=3, draws=4000, seed=1)
    assert values.mean() == pytest.approx(3 / 10, abs=0.01) and values.std() > 0


# ------------------------------------------------------------------------------ untrained_item_ids
MULTIMODAL = ["MICRO", "LATTICE", "VBPR", "FREEDOM", "BM3", "LGMRec"]
ID_TABLES = {"VBPR": ["item_embedding"]}  # the rest: X_i, item_embedding.weight


def all_scores(model):
    """Every real user's scores over every item, from the evaluation embeddings (cache cleared first; the same
    random draws each time: LGMRec draws Gumbel noise while scoring)."""
    model.eval()
    model.clear_eval_cache()
    torch.manual_seed(0)
    users, items = model.eval_embeddings()
    return users[1:] @ items.t()


@pytest.mark.parametrize("model_name", MULTIMODAL)
def test_zero_scores_untrained_items_without_their_ids(cold_data, tmp_path, model_name):
    """``zero`` scores exactly as the same model whose untrained items' ID rows are zeros, leaves the weights
    as they were, and changes the cold items' scores; ``keep`` is the model as trained. The untrained items
    are the valid and test cold items (and [PAD])."""
    name, cold = cold_data
    _, model, _, (train_data, _, _) = make(model_name, tmp_path, name)
    dataset = train_data._dataset
    untrained = internal_ids(dataset, cold["valid"]) | internal_ids(dataset, cold["test"]) | {0}
    assert set(model.untrained_items.tolist()) == untrained
    names = ID_TABLES.get(model_name, ["item_embedding.weight"])
    params = dict(model.named_parameters())
    assert [id(t) for t in model.item_id_tables()] == [id(params[n]) for n in names]

    assert model.untrained_item_ids == "keep"  # the yaml default: the reference codes
    before = {k: v.clone() for k, v in model.state_dict().items()}
    keep = all_scores(model)
    model.untrained_item_ids = "zero"
    zero = all_scores(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # restored after evaluation

    blanked = copy.deepcopy(model)
    blanked.untrained_item_ids = "keep"
    rows = torch.tensor(sorted(untrained))
    with torch.no_grad():
        for n in names:
            dict(blanked.named_parameters())[n][rows] = 0.0
    torch.testing.assert_close(zero, all_scores(blanked), rtol=0, atol=0)
    cold_ids = sorted(untrained - {0})
    assert (zero[:, cold_ids] - keep[:, cold_ids]).abs().max() > 1e-4


def test_blanked_ids_are_restored_when_scoring_fails(cold_data, tmp_path):
    name, _ = cold_data
    _, model, _, _ = make("VBPR", tmp_path, name, untrained_item_ids="zero", item_bias=True)
    saved = [t.detach().clone() for t in model.item_id_tables()]
    assert len(saved) == 2  # γ_i and β_i
    with pytest.raises(RuntimeError, match="scoring failed"):
        with model.untrained_ids_blanked():
            assert all((t[model.untrained_items] == 0).all() for t in model.item_id_tables())
            raise RuntimeError("scoring failed")
    assert all(torch.equal(a, b) for a, b in zip(saved, model.item_id_tables()))


def test_untrained_item_ids_is_checked(cold_data, tmp_path):
    name, _ = cold_data
    with pytest.raises(ConfigError) as err:
        make("MICRO", tmp_path, name, untrained_item_ids="none")
    assert str(err.value) == "config key 'untrained_item_ids' is 'none'; it must be one of ['keep', 'zero', 'content']"
    with pytest.raises(ConfigError) as err:  # BM3 scores predictor(LightGCN(X) + X): no content part
        make("BM3", tmp_path, name, untrained_item_ids="content")
    assert str(err.value) == ("config key 'untrained_item_ids' is 'content'; BM3's item scores have no content part "
                              "apart from the ID embeddings: use 'keep' or 'zero'")


@pytest.mark.parametrize("model_name", ["MICRO", "LATTICE", "FREEDOM", "LGMRec", "VBPR"])
def test_content_scores_untrained_items_from_their_content_part(cold_data, tmp_path, model_name):
    """``content``: the untrained items' rows of the evaluation item table are the content part of the model's
    item representation (MICRO, LATTICE: h/‖h‖ of the h ``forward`` returns; FREEDOM: h̃ = S·X_i; LGMRec:
    Σ_m norm(E_m) + α norm(E_ghe), its Gumbel noise drawn as in scoring; VBPR: the same scores as ``zero``),
    every other row as ``keep``; the weights are untouched."""
    import torch.nn.functional as F

    from recbole_micro.model import graphs

    name, _ = cold_data
    _, model, _, _ = make(model_name, tmp_path, name)
    keep = all_scores(model)
    model.untrained_item_ids = "content"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    content = all_scores(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    untrained = model.untrained_items
    trained = sorted(set(range(model.n_items)) - set(untrained.tolist()))
    torch.testing.assert_close(content[:, trained], keep[:, trained], rtol=0, atol=0)
    users, items = model.eval_embeddings()
    with torch.no_grad():
        if model_name == "VBPR":
            model.untrained_item_ids = "zero"
            torch.testing.assert_close(content, all_scores(model), rtol=0, atol=0)
            return
        if model_name == "FREEDOM":
            part = graphs.propagate(model.item_adj, model.item_embedding.weight, model.n_mm_layers)
        elif model_name == "LGMRec":
            torch.manual_seed(0)  # the draws of all_scores
            _, modal, global_, _ = model.embedding_parts()
            part = (modal + model.alpha * global_)[model.n_users :]
        else:
            part = F.normalize(model.forward()[-1], p=2, dim=1)
    torch.testing.assert_close(items[untrained], part[untrained])
    cold = sorted(set(untrained.tolist()) - {0})
    assert (content[:, cold] - keep[:, cold]).abs().max() > 1e-4


def test_zero_changes_evaluation_only(cold_data, tmp_path):
    """Training with ``zero`` or ``content`` is training with ``keep`` to the bit (the switch acts while scoring);
    the cold items' test Recall differs, and under an emulated accelerator either evaluates as on the CPU."""
    from emulated_device import emulated_accelerator

    name, _ = cold_data
    runs = {}
    for mode in ("keep", "zero", "content"):
        net, trainer, test_data, result = fit_and_test("MICRO", tmp_path, name, seed=3, untrained_item_ids=mode)
        runs[mode] = ({k: v.clone() for k, v in net.state_dict().items()}, result)
    keep_state, keep_result = runs["keep"]
    for mode in ("zero", "content"):
        state, result = runs[mode]
        assert keep_state.keys() == state.keys()
        assert all(torch.equal(keep_state[k], state[k]) for k in keep_state), mode
        assert keep_result["recall@20"] != result["recall@20"], mode
    for mode in ("zero", "content"):
        with emulated_accelerator():
            _, emulated, _, emulated_result = fit_and_test("MICRO", tmp_path, name, seed=3, untrained_item_ids=mode)
        assert emulated_result == runs[mode][1], mode


def test_rescoring_a_checkpoint_under_each_rule(cold_data, tmp_path):
    """``benchmarks/untrained_ids.py``: ``keep`` re-reads the run's own valid and test Recall@20 from its
    checkpoint; ``zero`` equals the model scored with the untrained items' ID rows set to zeros."""
    from recbole_micro.quick_start import load_data_and_model, run_recbole_micro
    from recbole_micro.utils import get_trainer

    script = benchmark_script("untrained_ids")
    name, _ = cold_data
    run = run_recbole_micro("VBPR", name, config_dict=run_config(
        tmp_path, device="cpu", use_gpu=False, learning_rate=0.01, epochs=2, eval_step=1, seed=2))
    model, seed, values = script.rescore(run["checkpoint"])
    assert (model, seed) == ("VBPR", 2)
    assert values["keep", "valid"] == run["best_valid_result"]["recall@20"]
    assert values["keep", "test"] == run["test_result"]["recall@20"]
    config, net, _, _, _, test_data = load_data_and_model(run["checkpoint"])
    with torch.no_grad():
        net.item_embedding[net.untrained_items] = 0.0
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net.eval())
    assert values["zero", "test"] == trainer.evaluate(test_data, load_best_model=False)["recall@20"]
    assert values["zero", "test"] != values["keep", "test"]


# ------------------------------------------------------------------------------ benchmarks/cold_parts.py
@pytest.mark.parametrize("model_name", ["MICRO", "LATTICE", "FREEDOM"])
def test_cold_rows_scored_from_each_part_of_the_item_representation(cold_data, tmp_path, model_name):
    """Each rule of ``benchmarks/cold_parts.py`` changes the cold rows only: ``trained`` is the model's own
    scoring, ``id part`` + ``content part`` add up to it, ``content part`` is what ``untrained_item_ids:
    content`` scores, ``unit norm`` scales it to 1 and ``as convolved`` is MICRO's and LATTICE's h itself (for
    FREEDOM h̃, the content part)."""
    import torch.nn.functional as F

    script = benchmark_script("cold_parts")
    name, _ = cold_data
    _, model, _, _ = make(model_name, tmp_path, name)
    model.eval()
    cold = model.untrained_items[1:]  # [PAD] aside
    warm = torch.ones(model.n_items, dtype=torch.bool)
    warm[model.untrained_items] = False
    with torch.no_grad():
        users, items = model.scoring_embeddings()
        scored = {rule: script.scored_by(model, rule)()[1] for rule in script.RULES}
    model.untrained_item_ids = "content"
    content_rule = model.eval_embeddings()[1]
    for rule, table in scored.items():
        assert torch.equal(table[warm], items[warm]), rule
    with torch.no_grad():
        shape = script.geometry(model)
    if model_name != "FREEDOM":  # the content part h/‖h‖ has length 1 on every row
        assert shape["cold"][1] == pytest.approx(1.0) and shape["warm"][1] == pytest.approx(1.0)
    assert torch.equal(scored["trained"], items)
    assert torch.equal(scored["content part"], content_rule)
    content = scored["content part"][cold]
    torch.testing.assert_close(scored["id part"][cold] + content, items[cold])
    torch.testing.assert_close(scored["content, unit norm"][cold], F.normalize(content, p=2, dim=1))
    convolved = scored["content, as convolved"][cold]
    if model_name == "FREEDOM":
        assert torch.equal(convolved, content)
    else:
        torch.testing.assert_close(F.normalize(convolved, p=2, dim=1), content)
        assert (convolved.norm(dim=1) - 1).abs().max() > 1e-3  # h itself is not normalised


def test_cold_parts_rescores_a_checkpoint_and_refuses_other_models(cold_data, tmp_path, capsys):
    """``trained`` re-reads the run's own valid and test Recall@20 from its checkpoint; a model without a content
    part is one ``error:`` line (exit status 2)."""
    from recbole_micro.quick_start import run_recbole_micro

    script = benchmark_script("cold_parts")
    name, _ = cold_data
    runs = {model: run_recbole_micro(model, name, config_dict=run_config(
        tmp_path, device="cpu", use_gpu=False, learning_rate=0.01, epochs=2, eval_step=1, seed=4))
        for model in ("FREEDOM", "BM3")}
    model, seed, values, shape = script.rescore(runs["FREEDOM"]["checkpoint"])
    assert (model, seed) == ("FREEDOM", 4)
    assert set(shape) == {"cold", "warm"} and all(len(v) == 4 and -1 <= v[2] <= 1 for v in shape.values())
    assert values["trained", "valid"] == runs["FREEDOM"]["best_valid_result"]["recall@20"]
    assert values["trained", "test"] == runs["FREEDOM"]["test_result"]["recall@20"]
    assert values["id part", "test"] != values["trained", "test"]
    with pytest.raises(SystemExit) as exit_:
        script.main([runs["BM3"]["checkpoint"]])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: config key 'untrained_item_ids' is 'content'; BM3's item scores have no content part apart "
                   "from the ID embeddings: use 'keep' or 'zero'"]
