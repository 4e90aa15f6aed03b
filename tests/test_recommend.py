"""``run_recbole_micro.py recommend``: top-k item tokens with scores per user token from a checkpoint."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, run_config, split_history as history, train_on_synthetic
from recbole_micro.cli import main as cli_main
from recbole_micro.commands import COMMANDS
from recbole_micro.errors import CheckpointError, ConfigError
from recbole_micro.quick_start import load_data_and_model, run_recbole_micro
from recbole_micro.recommend import UnknownUserError, format_recommendations, recommend

SMALL = dict(n_users=40, n_items=50, n_clusters=5, per_user=(6, 10), dims={"image": 12, "text": 6})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    def train(root):
        config = run_config(root, epochs=2, eval_step=1, train_batch_size=128)
        return run_recbole_micro(model="MICRO", dataset="syn", config_dict=config)["checkpoint"]

    return train_on_synthetic(tmp_path_factory, "rec", SMALL, train)


def test_top_k_excludes_training_items_and_matches_the_model(trained):
    root, checkpoint = trained
    loaded = load_data_and_model(checkpoint)
    results = recommend(checkpoint, ["3", "0", "3", "17"], topk=10, loaded=loaded)
    assert [r["user"] for r in results] == ["3", "0", "17"]  # order kept, duplicates dropped
    train = history(root, "train")
    config, model, dataset = loaded[:3]
    with torch.no_grad():
        users = torch.tensor(dataset.token2id(dataset.uid_field, ["3", "0", "17"]))
        scores = model.full_sort_predict({dataset.uid_field: users}).view(len(users), -1)
    for row, entry in enumerate(results):
        assert len(entry["items"]) == 10 and len(set(entry["items"])) == 10
        assert not set(entry["items"]) & train[entry["user"]]
        assert entry["scores"] == sorted(entry["scores"], reverse=True)
        # the best 10 of the model's own scores among the items the user did not train on
        allowed = [i for i in range(1, dataset.item_num)
                   if dataset.id2token(dataset.iid_field, i) not in train[entry["user"]]]
        expected = sorted(allowed, key=lambda i: -scores[row, i].item())[:10]
        assert entry["items"] == [str(t) for t in dataset.id2token(dataset.iid_field, expected)]
        assert entry["scores"] == pytest.approx([scores[row, i].item() for i in expected], abs=1e-6)


def test_exclude_train_and_valid(trained):
    root, checkpoint = trained
    seen = history(root, "train", "valid")
    results = recommend(checkpoint, ["1", "2"], topk=5, exclude="train+valid")
    assert [entry["user"] for entry in results] == ["1", "2"]
    for entry in results:
        assert len(entry["items"]) == 5 and not set(entry["items"]) & seen[entry["user"]]


def test_topk_beyond_the_catalogue_returns_every_unseen_item(trained):
    root, checkpoint = trained
    train = history(root, "train")
    (entry,) = recommend(checkpoint, ["5"], topk=10_000)
    assert len(entry["items"]) == 50 - len(train["5"])
    assert all(s != float("-inf") for s in entry["scores"])


def test_bad_requests(trained, tmp_path):
    _, checkpoint = trained
    with pytest.raises(UnknownUserError) as info:
        recommend(checkpoint, ["1", "nobody", "[PAD]"], topk=5)
    message = str(info.value)
    assert "\n" not in message
    assert "['nobody', '[PAD]'] (2 of 3)" in message and "dataset 'syn'" in message and "40 users" in message
    for topk in (0, -1, 2.5):
        with pytest.raises(ConfigError, match="topk"):
            recommend(checkpoint, ["1"], topk=topk)
    with pytest.raises(ConfigError, match="no user tokens"):
        recommend(checkpoint, [" ", ""], topk=5)
    with pytest.raises(ConfigError, match="exclude"):
        recommend(checkpoint, ["1"], exclude="everything")
    with pytest.raises(CheckpointError, match="does not exist"):
        recommend(tmp_path / "none.pth", ["1"])


def test_command_in_process(trained, capsys):
    _, checkpoint = trained
    assert set(COMMANDS) >= {"recommend"}
    results = cli_main(["recommend", "--checkpoint", checkpoint, "--users", "4,7", "--topk", "3"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "user\trank\titem\tscore" and len(out) == 1 + 6
    assert out[1:] == format_recommendations(results).splitlines()[1:]
    assert [line.split("\t")[:2] for line in out[1:4]] == [["4", "1"], ["4", "2"], ["4", "3"]]
    for argv, part in [
        (["recommend", "--checkpoint", checkpoint, "--users", "4,ghost"], "['ghost'] (1 of 2)"),
        (["recommend", "--checkpoint", checkpoint, "--users", "4", "--knn_k=3"], "takes no config overrides"),
    ]:
        with pytest.raises(SystemExit) as info:
            cli_main(argv)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and part in err


def test_command_in_subprocess(trained, tmp_path):
    _, checkpoint = trained
    script = str(REPO / "run_recbole_micro.py")
    ok = subprocess.run([sys.executable, script, "recommend", "--checkpoint", checkpoint, "--users", "1,2", "--topk", "4"],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.strip().splitlines()
    assert lines[0] == "user\trank\titem\tscore" and len(lines) == 9
    assert {line.split("\t")[0] for line in lines[1:]} == {"1", "2"}
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(Path(checkpoint).read_bytes()[:1000])
    bad = subprocess.run([sys.executable, script, "recommend", "--checkpoint", str(corrupt), "--users", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    err = bad.stderr.strip().splitlines()
    assert len(err) == 1 and str(corrupt) in err[0] and "corrupt, truncated" in err[0]


def test_untrained_items_scored_from_content_on_request(trained, capsys):
    """``--untrained_item_ids zero``: the top-k of the model whose untrained items' ID rows are zeros (here items
    marked untrained by hand: the synthetic catalogue has no cold item); ``keep`` and the default equal the plain
    model; ``content`` differs from both; an ID-only model, ``content`` for scores without a content part or an
    unknown rule is one line."""
    root, checkpoint = trained
    loaded = load_data_and_model(checkpoint)
    model, dataset = loaded[1], loaded[2]
    model.untrained_items = torch.tensor([0, 3, 9, 27, 41])
    plain = recommend(checkpoint, ["2", "5"], topk=10, loaded=loaded)
    assert recommend(checkpoint, ["2", "5"], topk=10, loaded=loaded, untrained_item_ids="keep") == plain
    zero = recommend(checkpoint, ["2", "5"], topk=10, loaded=loaded, untrained_item_ids="zero")
    assert zero != plain
    model.untrained_item_ids = "keep"
    with torch.no_grad():
        model.item_embedding.weight[model.untrained_items] = 0.0
    model.clear_eval_cache()
    assert recommend(checkpoint, ["2", "5"], topk=10, loaded=loaded) == zero
    content = recommend(checkpoint, ["2", "5"], topk=10, loaded=loaded, untrained_item_ids="content")
    assert content not in (plain, zero)  # MICRO: h/‖h‖ alone, the item's own X_i still in its h
    assert model.untrained_item_ids == "content"
    model.content_part = None  # as a model whose scores have no content part (BM3, LGMRec)
    with pytest.raises(ConfigError, match=r"'content'; MICRO's item scores have no content part"):
        recommend(checkpoint, ["2"], loaded=loaded, untrained_item_ids="content")
    with pytest.raises(ConfigError, match=r"untrained_item_ids is 'none'; use one of \['keep', 'zero', 'content'\]"):
        recommend(checkpoint, ["2"], loaded=loaded, untrained_item_ids="none")
    bpr = run_recbole_micro(model="BPR", dataset="syn", config_dict=run_config(root, epochs=1, eval_step=1))
    with pytest.raises(ConfigError, match="model BPR scores items by their ID embeddings only"):
        recommend(bpr["checkpoint"], ["2"], untrained_item_ids="zero")
    with pytest.raises(SystemExit) as info:
        cli_main(["recommend", "--checkpoint", checkpoint, "--users", "2", "--untrained_item_ids", "none"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "untrained_item_ids" in err
