"""Splitting one search across jobs: ``--shard K/N`` trains the K-th of every N proposals into its own
export, ``--reuse`` takes the shards' trials over, and the whole search's export then equals the export
of one uninterrupted search."""

import pytest

from conftest import run_config
from recbole_micro.errors import ConfigError
from recbole_micro.tools import search
from recbole_micro.tools.cli import tune_main
from recbole_micro.tools.compare import load_tuned
from recbole_micro.tools.export import load_export
from recbole_micro.tools.search import tune_model

SMALL = dict(n_users=80, n_items=100, n_clusters=8, per_user=(6, 10))
RATES = [0.0005, 0.001, 0.005, 0.01, 0.05]


def grid(tmp_path):
    path = tmp_path / "grid.hyper"
    path.write_text(f"learning_rate choice {RATES}\nweight_decay choice [0.0, 0.001]\n")
    return str(path)


def scored(calls):
    """An objective without training whose score is a function of the parameters; records its calls."""

    def objective(config_dict, config_file_list=None, saved=True, **checkpointing):
        calls.append((config_dict["learning_rate"], config_dict["weight_decay"]))
        valid = RATES.index(config_dict["learning_rate"]) / 10 + config_dict["weight_decay"] * 7
        return {"best_valid_score": valid, "best_valid_result": {"recall@20": valid},
                "test_result": {"recall@20": 1 - valid}, "epochs_run": 1, "best_epoch": 0}

    return objective


def argv_of(name, space, out, tmp_path, *extra):
    argv = ["--model", "BPR", "--dataset", name, "--params_file", space, "--output_file", str(out), *extra]
    return argv + [f"--{k}={v}" for k, v in run_config(tmp_path, epochs=2, eval_step=1).items()]


def points(doc):
    return [(t["params"]["learning_rate"], t["params"]["weight_decay"]) for t in doc["trials"]]


@pytest.mark.parametrize("algo, jobs", [("exhaustive", 2), ("exhaustive", 3), ("random", 2)])
def test_shards_split_the_search_and_reuse_ends_like_one_search(tmp_path, synthetic, monkeypatch, algo, jobs):
    name = synthetic("syn", **SMALL)
    space = grid(tmp_path)
    algo_args = ["--algo", algo] + (["--max_evals", "7"] if algo == "random" else [])
    calls = []
    monkeypatch.setattr(search, "objective_function", scored(calls))

    tune_main(argv_of(name, space, tmp_path / "one", tmp_path, *algo_args))
    one = load_export(str(tmp_path / "one.json"))
    proposals = points(one)
    assert len(proposals) == (10 if algo == "exhaustive" else 7)

    shards = []
    for k in range(1, jobs + 1):
        calls.clear()
        out = tmp_path / f"shard{k}"
        tune_main(argv_of(name, space, out, tmp_path, *algo_args, "--shard", f"{k}/{jobs}"))
        doc = load_export(str(out) + ".json")
        # job k trains the k-th of every `jobs` proposals of the one search, in its order, and nothing else
        assert points(doc) == proposals[k - 1::jobs] == calls
        assert doc["shard"] == f"{k}/{jobs}" and doc["status"] == "finished"
        assert f"shard {k}/{jobs}" in (tmp_path / f"shard{k}.txt").read_text().splitlines()[0]
        shards.append(str(out) + ".json")

    calls.clear()
    tune_main(argv_of(name, space, tmp_path / "whole", tmp_path, *algo_args, "--reuse", ",".join(shards)))
    whole = load_export(str(tmp_path / "whole.json"))
    assert calls == []  # every trial came from a shard
    assert points(whole) == proposals
    assert [t["best_valid_score"] for t in whole["trials"]] == [t["best_valid_score"] for t in one["trials"]]
    assert all(t.get("reused") for t in whole["trials"]) and "shard" not in whole
    assert (tmp_path / "whole.txt").read_text().count("(taken over from an earlier run or a shard of this search)") \
        == len(proposals)
    assert whole["best"]["params"] == one["best"]["params"] and whole["best"]["trial"] == one["best"]["trial"]
    assert load_tuned(str(tmp_path / "whole.json"))["BPR"]["params"] == one["best"]["params"]


def test_whole_search_trains_what_no_shard_finished(tmp_path, synthetic, monkeypatch):
    """One of two shards ran: the whole search takes its trials over and trains only the rest."""
    name = synthetic("syn", **SMALL)
    space = grid(tmp_path)
    calls = []
    monkeypatch.setattr(search, "objective_function", scored(calls))
    tune_main(argv_of(name, space, tmp_path / "shard2", tmp_path, "--shard", "2/2"))
    done = list(calls)
    calls.clear()
    tune_main(argv_of(name, space, tmp_path / "whole", tmp_path, "--reuse", str(tmp_path / "shard2.json")))
    whole = load_export(str(tmp_path / "whole.json"))
    assert sorted(calls + done) == sorted(points(whole)) and len(points(whole)) == 10
    assert not set(calls) & set(done)
    assert [bool(t.get("reused")) for t in whole["trials"]] == [i % 2 == 1 for i in range(10)]


def test_shard_trials_train_as_in_the_one_search(tmp_path, synthetic):
    """Real training (BPR, 2 epochs): a shard's trial equals the same trial of the unsplit search."""
    name = synthetic("syn", **SMALL)
    space = tmp_path / "two.hyper"
    space.write_text("learning_rate choice [0.001, 0.05]\n")
    fixed = run_config(tmp_path, epochs=2, eval_step=1)
    one = tune_model("BPR", name, str(space), output_file=str(tmp_path / "one"), overrides=fixed)
    parts = [tune_model("BPR", name, str(space), output_file=str(tmp_path / f"s{k}"), overrides=fixed,
                        shard=f"{k}/2") for k in (1, 2)]
    assert [p["trials"][0]["params"] for p in parts] == [t["params"] for t in one["trials"]]
    for part, trial in zip(parts, one["trials"]):
        assert part["trials"][0]["valid"] == trial["valid"] and part["trials"][0]["test"] == trial["test"]
    whole = tune_model("BPR", name, str(space), output_file=str(tmp_path / "whole"), overrides=fixed,
                       reuse=[str(tmp_path / "s1.json"), str(tmp_path / "s2.json")])
    assert whole["best"]["params"] == one["best"]["params"]
    assert whole["best"]["best_valid_score"] == one["best"]["best_valid_score"]


@pytest.mark.parametrize("extra, message", [
    (["--shard", "3/2"], "--shard must be K/N with 1 <= K <= N"),
    (["--shard", "0/2"], "--shard must be K/N with 1 <= K <= N"),
    (["--shard", "half"], "got 'half'"),
    (["--shard", "1/2", "--algo", "bayes"], "not with --algo bayes"),
    (["--shard", "1/2", "--early_stop", "3"], "not with --early_stop"),
    (["--shard", "1/2", "--tool", "ray"], "not with --tool ray"),
    (["--reuse", "nowhere.json"], "--reuse: nowhere.json does not exist"),
])
def test_bad_shard_or_reuse_is_one_line_before_any_trial(tmp_path, synthetic, monkeypatch, capsys, extra, message):
    name = synthetic("syn", **SMALL)
    calls = []
    monkeypatch.setattr(search, "objective_function", scored(calls))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        tune_main(argv_of(name, grid(tmp_path), tmp_path / "out", tmp_path, *extra))
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and calls == []
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "out.json").exists()


def test_reuse_refuses_another_search_and_tuned_refuses_a_shard(tmp_path, synthetic, monkeypatch):
    name = synthetic("syn", **SMALL)
    space = grid(tmp_path)
    monkeypatch.setattr(search, "objective_function", scored([]))
    tune_main(argv_of(name, space, tmp_path / "shard1", tmp_path, "--shard", "1/2"))
    with pytest.raises(ConfigError, match=r"--reuse: .*shard1.json is the export of another search \(.*seed differ\)"):
        tune_model("BPR", name, space, output_file=str(tmp_path / "other"),
                   overrides=dict(run_config(tmp_path, epochs=2, eval_step=1), seed=7), reuse=str(tmp_path / "shard1.json"))
    with pytest.raises(ConfigError, match="shard 1/2 of a search; run the whole search with run_hyper.py --reuse"):
        load_tuned(str(tmp_path / "shard1.json"))


def test_a_second_search_into_the_same_export_is_refused_while_the_first_runs(tmp_path, synthetic, monkeypatch,
                                                                              capsys):
    """Two jobs on one export would train the same trials and overwrite each other's record: the second stops
    with one line before it reads or writes anything; the claim is gone when the first ends."""
    from recbole_micro.tools.files import claimed

    name = synthetic("syn", **SMALL)
    calls = []
    monkeypatch.setattr(search, "objective_function", scored(calls))
    out = tmp_path / "LightGCN-syn"
    argv = argv_of(name, grid(tmp_path), out, tmp_path, "--resume")
    with claimed(str(out) + ".json", "held by the first job"):  # the first job, mid-search
        with pytest.raises(SystemExit) as stop:
            tune_main(argv)
        assert stop.value.code == 2 and calls == [] and not (tmp_path / "LightGCN-syn.json").exists()
        assert capsys.readouterr().err.strip().splitlines() == [
            f"error: another search is writing {out}.json (its run_hyper.py is still running); wait for it to end, "
            f"or pass another --output_file"]
        # a shard of the same search writes its own export: not blocked
        tune_main(argv_of(name, grid(tmp_path), tmp_path / "shard1", tmp_path, "--shard", "1/2"))
        assert len(calls) == 5
    tune_main(argv)
    assert len(load_export(str(out) + ".json")["trials"]) == 10
    assert sorted(p.name for p in tmp_path.glob("*.lock")) == []


def test_an_interrupted_resume_keeps_the_earlier_trials_it_had_not_proposed_again(tmp_path, synthetic, monkeypatch):
    """A resumed search rewrites its export as it goes: the earlier run's trials that come later in the
    proposals (a shard's, or any finished out of order) stay in the export under ``earlier`` until proposed
    again, so a second interruption loses none of them."""
    name = synthetic("syn", **SMALL)
    space = grid(tmp_path)
    calls = []
    monkeypatch.setattr(search, "objective_function", scored(calls))
    tune_main(argv_of(name, space, tmp_path / "one", tmp_path))
    proposals = points(load_export(str(tmp_path / "one.json")))
    out = tmp_path / "cut"
    tune_main(argv_of(name, space, out, tmp_path, "--shard", "2/2"))  # the 2nd, 4th, ... proposals
    assert points(load_export(str(out) + ".json")) == proposals[1::2]

    def interrupted(config_dict, config_file_list=None, saved=True, **checkpointing):
        raise KeyboardInterrupt  # at the first trial this run has to train: the search's first proposal

    monkeypatch.setattr(search, "objective_function", interrupted)
    with pytest.raises(SystemExit) as stop:
        tune_main(argv_of(name, space, out, tmp_path, "--resume"))
    assert stop.value.code == 130
    cut = load_export(str(out) + ".json")
    assert cut["status"] == "interrupted" and cut["trials"] == []
    assert points({"trials": cut["earlier"]}) == proposals[1::2]
    assert f"{len(proposals[1::2])} finished trial(s) of an earlier run not proposed again yet" \
        in (tmp_path / "cut.txt").read_text()

    calls.clear()
    monkeypatch.setattr(search, "objective_function", scored(calls))
    tune_main(argv_of(name, space, out, tmp_path, "--resume"))
    whole = load_export(str(out) + ".json")
    assert calls == proposals[0::2]  # only what no run had finished
    assert points(whole) == proposals and "earlier" not in whole
    assert [t.get("reused", False) for t in whole["trials"]] == [i % 2 == 1 for i in range(len(proposals))]
