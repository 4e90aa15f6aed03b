"""The one-command comparison: one protocol for all models, table + chart + JSON, --append, --from-json."""

import json
import shutil

import pytest

from conftest import run_config
from recbole_micro import compare
from recbole_micro.data.synthetic import make_synthetic_dataset
from recbole_micro.tuning import TuningExport, trial_entry

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = dict(n_users=80, n_items=100, n_clusters=8, per_user=(6, 10))


def table_rows(markdown):
    """The rows of the results table (the first Markdown table of the page), without header and rule."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("*") for cell in line.strip("|").split("|")])
    return lines[start], rows


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    make_synthetic_dataset(str(root), "syn", **SMALL)
    out = root / "results"
    overrides = run_config(root, eval_step=1)
    doc = compare.run_comparison("syn", "BPR,MICRO", epochs=2, overrides=overrides, out=str(out),
                                 command="python run_compare.py --dataset syn --models BPR,MICRO --epochs 2")
    return root, out, overrides, doc


def test_table_one_row_per_model_and_chart(compared, capsys):
    _, out, _, doc = compared
    page = (out / "syn.md").read_text()
    header, rows = table_rows(page)
    assert [r[0] for r in rows] == ["BPR", "MICRO"]
    for column in ("test R@20", "test N@20", "valid R@10", "valid P@20", "s/epoch", "epochs to best", "parameters"):
        assert column in header
    assert all(len(r) == header.count("|") - 1 for r in rows)
    assert "python run_compare.py --dataset syn --models BPR,MICRO --epochs 2" in page
    assert "--from-json" in page and "## Protocol" in page and "standard NDCG" in page
    assert "reconstructed" not in page  # the Baby data note only on the Baby page

    png = out / "syn.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    from matplotlib.image import imread

    image = imread(str(png))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_json_records_protocol_and_cost(compared):
    _, out, _, _ = compared
    doc = json.loads((out / "syn.json").read_text())
    assert doc["order"] == ["BPR", "MICRO"]
    for model in ("BPR", "MICRO"):
        run = doc["runs"][model]
        assert run["status"] == "ok"
        assert run["epochs_run"] == 2 and run["epoch_budget"] == 2
        assert run["epochs_to_best"] == run["best_epoch"] + 1 and 1 <= run["epochs_to_best"] <= 2
        assert run["seconds_per_epoch"] > 0 and run["params"] > 0
        assert {"recall@20", "ndcg@20", "precision@10"} <= set(run["test"]) and "recall@20" in run["valid"]
        assert run["best_valid_score"] == pytest.approx(run["valid"]["recall@20"])
    # one protocol: same split files, seed, evaluation and budget for both models
    settings = [doc["runs"][m]["settings"] for m in ("BPR", "MICRO")]
    assert settings[0] == settings[1]
    assert settings[0]["benchmark_filename"] == ["train", "valid", "test"] and settings[0]["epochs"] == 2
    assert doc["runs"]["MICRO"]["params"] > doc["runs"]["BPR"]["params"]


def test_progress_lines_name_model_and_epoch(tmp_path, synthetic, capsys):
    name = synthetic("syn", **SMALL)
    compare.run_comparison(name, ["BPR"], epochs=2, overrides=run_config(tmp_path, eval_step=1),
                           out=str(tmp_path / "res"))
    stdout = capsys.readouterr().out
    assert "[compare 1/1] BPR epoch 1/2:" in stdout and "[compare 1/1] BPR epoch 2/2:" in stdout
    assert "valid recall@20" in stdout


def test_append_with_tuned_params_and_from_json(compared, tmp_path):
    root, out, overrides, _ = compared
    merged = tmp_path / "merged"
    shutil.copytree(out, merged)
    export = TuningExport(str(tmp_path / "lightgcn-syn"), {"model": "LightGCN", "dataset": "syn",
                                                           "valid_metric": "recall@20", "valid_metric_bigger": True})
    for lr, score in ((0.002, 0.1), (0.02, 0.3)):
        export.add(trial_entry({"learning_rate": lr, "n_layers": 1},
                               {"best_valid_score": score, "best_valid_result": {"recall@20": score}, "test_result": {}}))
    doc = compare.run_comparison("syn", "LightGCN", epochs=2, tuned=export.json_path, overrides=overrides,
                                 out=str(merged), append=True, command="python run_compare.py --append ...")
    assert doc["order"] == ["BPR", "MICRO", "LightGCN"]
    lightgcn = doc["runs"]["LightGCN"]
    assert lightgcn["hyper"]["learning_rate"] == 0.02 and lightgcn["hyper"]["n_layers"] == 1
    assert lightgcn["tuned_from"]["trial"] == 2
    page = (merged / "syn.md").read_text()
    assert [r[0] for r in table_rows(page)[1]] == ["BPR", "MICRO", "LightGCN"]
    assert "tuned: best valid trial 2" in page
    assert "python run_compare.py --dataset syn --models BPR,MICRO --epochs 2" in page  # both commands kept

    (merged / "syn.md").unlink()
    (merged / "syn.png").unlink()
    compare.main(["--dataset", "syn", "--from-json", "--out", str(merged)])
    assert (merged / "syn.md").read_text() == page
    assert (merged / "syn.png").read_bytes()[:8] == PNG_SIGNATURE


def test_baby_page_labels_reference_numbers_and_features(compared):
    _, out, _, _ = compared
    doc = json.loads((out / "syn.json").read_text())
    doc["dataset"] = "baby"
    page = compare.render_page(doc, "baby.png")
    assert "reconstructed stand-ins" in page and "../shared/data/README.md" in page
    section = page.split("## Published reference numbers — NOT from this run", 1)[1]
    for model, recall in (("BPR", "0.0575"), ("LightGCN", "0.0754"), ("VBPR", "0.0663"), ("LATTICE", "0.0850"),
                          ("FREEDOM", "0.0992")):
        assert f"| {model} | {recall} |" in section
    # the published numbers never enter the results table
    assert "0.0992" not in page.split("## Published reference numbers", 1)[0]


def test_side_by_side_append_jobs_keep_each_others_runs(compared, tmp_path, monkeypatch):
    """Two jobs appending to one dataset: each save re-reads the file, so neither loses the other's runs."""
    _, out, _, doc = compared
    template = doc["runs"]["BPR"]

    def fake_run_model(model, dataset, config_dict, config_files=None, prefix=""):
        if model == "B":  # meanwhile, another job appends model X
            compare.run_comparison("syn", ["X"], out=str(tmp_path), append=True, command="job 2")
        return dict(template, model=model)

    monkeypatch.setattr(compare, "run_model", fake_run_model)
    compare.run_comparison("syn", ["A", "B"], out=str(tmp_path), append=True, command="job 1")
    saved = json.loads((tmp_path / "syn.json").read_text())
    assert saved["order"] == ["A", "X", "B"] and saved["commands"] == ["job 1", "job 2"]
    assert [r[0] for r in table_rows((tmp_path / "syn.md").read_text())[1]] == ["A", "X", "B"]
    # a job without --append starts a new file
    compare.run_comparison("syn", ["C"], out=str(tmp_path), command="job 3")
    assert json.loads((tmp_path / "syn.json").read_text())["order"] == ["C"]
