"""The one-command comparison: one protocol for all models, table + chart + JSON, --append, --from-json,
selection on validation for --tuned, one clear line for bad model names and failed runs."""

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, run_config
from recbole_micro.data.synthetic import make_synthetic_dataset
from recbole_micro.tools import compare, page
from recbole_micro.tools.cli import compare_main
from recbole_micro.tools.export import TuningExport, trial_entry
from recbole_micro.tools.results import load_results, model_runs, put_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL = dict(n_users=80, n_items=100, n_clusters=8, per_user=(6, 10))
SHORT = {"R": "recall", "N": "ndcg", "P": "precision"}


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


def parsed_table(markdown):
    """``{row name: {column: cell}}`` of the results table (the name without its mode label)."""
    header, rows = table_rows(markdown)
    columns = [c.strip() for c in header.strip("|").split("|")]
    return {row[0].split(" (")[0]: dict(zip(columns, row)) for row in rows}


def metric_columns(columns):
    """``[(column, split, metric key)]`` for every metric column, e.g. ``("test R@20", "test", "recall@20")``."""
    found = []
    for column in columns:
        split, _, short = column.partition(" ")
        if split in ("test", "valid") and "@" in short:
            letter, k = short.split("@")
            found.append((column, split, f"{SHORT[letter]}@{k}"))
    return found


def assert_table_matches_json(markdown, doc):
    """Every cell of every row equals the JSON (single-seed runs): metrics, cost, epochs, parameters."""
    table = parsed_table(markdown)
    assert list(table) == [m for m in doc["order"] if model_runs(doc, m, "ok")]
    for model, cells in table.items():
        (run,) = model_runs(doc, model, "ok")
        columns = metric_columns(cells)
        assert len(columns) == 12
        for column, split, key in columns:
            assert float(cells[column]) == pytest.approx(run[split][key], abs=5e-5), (model, column)
        assert cells["seeds"] == str(run["seed"])
        assert float(cells["s/epoch"]) == pytest.approx(run["seconds_per_epoch"], abs=5e-3)
        assert cells["epochs run / budget"].split(" (")[0] == f"{run['epochs_run']} / {run['epoch_budget']}"
        assert cells["epochs to best"] == str(run["epochs_to_best"])
        assert cells["parameters"] == f"{run['params']:,}"


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    make_synthetic_dataset(str(root), "syn", **SMALL)
    out = root / "results"
    overrides = run_config(root, eval_step=1)
    doc = compare.run_comparison("syn", "BPR,MICRO", epochs=2, overrides=overrides, out=str(out),
                                 command="python run_compare.py --dataset syn --models BPR,MICRO --epochs 2")
    return root, out, overrides, doc


def test_table_one_row_per_model_and_chart(compared):
    _, out, _, doc = compared
    page_text = (out / "syn.md").read_text()
    header, rows = table_rows(page_text)
    assert [r[0] for r in rows] == ["BPR", "MICRO (full contrastive loss)"]  # MICRO's row names its loss
    for column in ("test R@20", "test N@20", "valid R@10", "valid P@20", "s/epoch", "epochs to best", "parameters"):
        assert column in header
    assert all(len(r) == header.count("|") - 1 for r in rows)
    assert "python run_compare.py --dataset syn --models BPR,MICRO --epochs 2" in page_text
    assert "--from-json" in page_text and "## Protocol" in page_text and "standard NDCG" in page_text
    assert "reconstructed" not in page_text  # the Baby data note only on the Baby page
    assert (out / "syn.png").read_bytes()[:8] == PNG_SIGNATURE


def test_every_table_cell_equals_the_json(compared):
    """Parse every cell: a page printing the valid numbers under the test headers (or any other mix-up) fails."""
    _, out, _, _ = compared
    doc = load_results(str(out / "syn.json"))
    assert_table_matches_json((out / "syn.md").read_text(), doc)
    # the check can fail: swapping valid and test in the JSON no longer matches the page
    swapped = json.loads(json.dumps(doc))
    for model in swapped["runs"]:
        for run in swapped["runs"][model].values():
            run["valid"], run["test"] = run["test"], run["valid"]
    if any(model_runs(doc, m)[0]["valid"] != model_runs(doc, m)[0]["test"] for m in doc["order"]):
        with pytest.raises(AssertionError):
            assert_table_matches_json((out / "syn.md").read_text(), swapped)


def test_chart_bars_equal_the_json(compared):
    _, out, _, _ = compared
    doc = load_results(str(out / "syn.json"))
    figure = page.plot_results(doc)
    ax = figure.axes[0]
    bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
    assert set(bars) == {"Recall@20", "NDCG@20"}
    for label, key in (("Recall@20", "recall@20"), ("NDCG@20", "ndcg@20")):
        heights = [patch.get_height() for patch in bars[label].patches]
        assert heights == pytest.approx([model_runs(doc, m)[0]["test"][key] for m in ("BPR", "MICRO")], abs=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["BPR", "MICRO\n(full contrastive loss)"]


def test_json_records_protocol_and_cost(compared):
    _, out, _, _ = compared
    doc = json.loads((out / "syn.json").read_text())
    assert doc["format"] == "recbole-micro comparison 2"
    assert doc["order"] == ["BPR", "MICRO"] and doc["seeds"] == [123]
    for model in ("BPR", "MICRO"):
        assert list(doc["runs"][model]) == ["123"]
        run = doc["runs"][model]["123"]
        assert run["status"] == "ok" and run["seed"] == 123
        assert run["epochs_run"] == 2 and run["epoch_budget"] == 2
        assert run["epochs_to_best"] == run["best_epoch"] + 1 and 1 <= run["epochs_to_best"] <= 2
        assert run["seconds_per_epoch"] > 0 and run["params"] > 0
        assert {"recall@20", "ndcg@20", "precision@10"} <= set(run["test"]) and "recall@20" in run["valid"]
        assert run["best_valid_score"] == pytest.approx(run["valid"]["recall@20"])
        assert Path(run["checkpoint"]).name.startswith(f"{model}-seed123-")
    # one protocol: same split files, seed, evaluation and budget for both models; each its own native batches
    settings = [doc["runs"][m]["123"]["settings"] for m in ("BPR", "MICRO")]
    assert [s.pop("train_sampler") for s in settings] == ["interaction", "user"]
    assert settings[0] == settings[1]
    settings[0]["train_sampler"] = "interaction"
    assert settings[0]["benchmark_filename"] == ["train", "valid", "test"] and settings[0]["epochs"] == 2
    assert {"test_mask_valid", "train_sampler", "eval_candidates"} <= set(settings[0])  # stated on the page
    assert settings[0]["eval_candidates"] == "all"
    assert doc["runs"]["MICRO"]["123"]["params"] > doc["runs"]["BPR"]["123"]["params"]


def test_progress_lines_name_model_and_epoch(tmp_path, synthetic, capsys):
    name = synthetic("syn", **SMALL)
    compare.run_comparison(name, ["BPR"], epochs=2, overrides=run_config(tmp_path, eval_step=1),
                           out=str(tmp_path / "res"))
    stdout = capsys.readouterr().out
    assert "[compare 1/1] BPR epoch 1/2:" in stdout and "[compare 1/1] BPR epoch 2/2:" in stdout
    assert "valid recall@20" in stdout


def disagreeing_export(path, model="LightGCN"):
    """A tuning export whose validation winner (trial 2) is the test loser, and whose stored 'best' was
    tampered with to point at the test winner (trial 1)."""
    export = TuningExport(str(path), {"model": model, "dataset": "syn", "valid_metric": "recall@20",
                                      "valid_metric_bigger": True})
    for lr, valid, test in ((0.002, 0.1, 0.9), (0.02, 0.3, 0.2), (0.01, 0.2, 0.5)):
        export.add(trial_entry({"learning_rate": lr, "n_layers": 1},
                               {"best_valid_score": valid, "best_valid_result": {"recall@20": valid},
                                "test_result": {"recall@20": test}}))
    doc = json.loads(Path(export.json_path).read_text())
    assert doc["best"]["trial"] == 2  # the export itself selects on validation
    doc["best"] = dict(doc["best"], trial=1, params=doc["trials"][0]["params"])
    Path(export.json_path).write_text(json.dumps(doc))
    return export.json_path


def test_append_with_tuned_params_and_from_json(compared, tmp_path):
    """--tuned takes the validation winner (recomputed from the trials), --append merges, --from-json re-renders."""
    root, out, overrides, _ = compared
    merged = tmp_path / "merged"
    shutil.copytree(out, merged)
    export = disagreeing_export(tmp_path / "lightgcn-syn")
    assert compare.load_tuned(export)["LightGCN"]["trial"] == 2
    doc = compare.run_comparison("syn", "LightGCN", epochs=2, tuned=export, overrides=overrides,
                                 out=str(merged), append=True, command="python run_compare.py --append ...")
    assert doc["order"] == ["BPR", "MICRO", "LightGCN"]
    lightgcn = model_runs(doc, "LightGCN")[0]
    assert lightgcn["hyper"]["learning_rate"] == 0.02 and lightgcn["hyper"]["n_layers"] == 1
    assert lightgcn["tuned_from"]["trial"] == 2
    page_text = (merged / "syn.md").read_text()
    assert [r[0].split(" (")[0] for r in table_rows(page_text)[1]] == ["BPR", "MICRO", "LightGCN"]
    assert "tuned: best valid trial 2" in page_text and "not this dataset's" not in page_text
    elsewhere = load_results(str(merged / "syn.json"))  # the same parameters, selected on another dataset
    model_runs(elsewhere, "LightGCN")[0]["tuned_from"]["dataset"] = "baby"
    (tmp_path / "elsewhere").mkdir()
    page.write_page(elsewhere, str(tmp_path / "elsewhere"))
    assert ("tuned: best valid trial 2 of `tuning/lightgcn-syn.json` (grid below), selected on baby's validation "
            "split, not this dataset's;") in (tmp_path / "elsewhere" / "syn.md").read_text()
    assert "python run_compare.py --dataset syn --models BPR,MICRO --epochs 2" in page_text  # both commands kept
    assert_table_matches_json(page_text, load_results(str(merged / "syn.json")))

    (merged / "syn.md").unlink()
    (merged / "syn.png").unlink()
    compare_main(["--dataset", "syn", "--from-json", "--out", str(merged)])
    assert (merged / "syn.md").read_text() == page_text
    assert (merged / "syn.png").read_bytes()[:8] == PNG_SIGNATURE

    # the grid: read from the export shipped beside the JSON (tuning/), chosen trial in bold
    assert "the export `tuning/lightgcn-syn.json` is not beside the JSON" in page_text
    (merged / "tuning").mkdir()
    shutil.copy(export, merged / "tuning")
    with_grid = page.render_page(load_results(str(merged / "syn.json")), "syn.png", str(merged))
    lines = with_grid.splitlines()
    start = lines.index("| trial | parameters | valid recall@20 | test recall@20 | epochs run | epochs to best |")
    grid = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start + 2:start + 5]]
    trials = json.loads(Path(export).read_text())["trials"]
    assert [row[0] for row in grid] == ["1", "**2**", "3"]  # bold = the validation winner, not the tampered best
    assert [float(row[2].strip("*")) for row in grid] == [t["best_valid_score"] for t in trials]
    assert [float(row[3]) for row in grid] == [t["test"]["recall@20"] for t in trials]
    assert grid[1][1] == "**learning_rate=0.02, n_layers=1**"
    assert "of `tuning/lightgcn-syn.json` (grid below)" in with_grid
    # a variant row trained from the same export (e.g. LightGCN-interaction) shares the one grid
    doc = load_results(str(merged / "syn.json"))
    put_run(doc, dict(model_runs(doc, "LightGCN")[0], name="LightGCN-native"))
    shared = page.render_page(doc, "syn.png", str(merged))
    assert shared.count("| trial | parameters |") == 1
    assert "**LightGCN, LightGCN-native** (`tuning/lightgcn-syn.json`" in shared


def test_baby_page_labels_reference_numbers_and_features(compared):
    _, out, _, _ = compared
    doc = load_results(str(out / "syn.json"))
    doc["dataset"] = "baby"
    page_text = page.render_page(doc, "baby.png")
    assert "reconstructed stand-ins" in page_text and "../shared/data/README.md" in page_text
    section = page_text.split("## Published reference numbers — NOT from this run", 1)[1]
    for model, recall in (("BPR", "0.0575"), ("LightGCN", "0.0754"), ("VBPR", "0.0663"), ("LATTICE", "0.0850"),
                          ("BM3", "0.0883"), ("FREEDOM", "0.0992"), ("LGMRec‡ (paper)", "0.1002")):
        assert f"| {model} | {recall} |" in section
    # the published numbers never enter the results table
    assert "0.0992" not in page_text.split("## Published reference numbers", 1)[0]


def test_page_states_cold_start_ranking_and_only_the_overrides_a_model_reads(compared):
    """A cold-start run's page says the ranking is over each split's cold items; an override of a key the
    plugin's models add is listed only for the models whose yamls (the plugin's or RecBole's) define it:
    contrastive_mode for MICRO, not BPR; reg_weight for MICRO and RecBole's LightGCN, not BPR."""
    _, out, _, _ = compared
    doc = load_results(str(out / "syn.json"))
    evaluation = [line for line in page.render_page(doc).splitlines() if line.startswith("- **Evaluation:**")]
    assert len(evaluation) == 1 and "over all items," in evaluation[0] and "cold" not in evaluation[0]
    put_run(doc, dict(model_runs(doc, "BPR")[0], model="LightGCN"))  # a RecBole model with reg_weight in its yaml
    for model in ("BPR", "MICRO", "LightGCN"):
        run = model_runs(doc, model)[0]
        put_run(doc, dict(run, settings=dict(run["settings"], eval_candidates="cold"),
                          overrides=dict(run["overrides"], contrastive_mode="sampled", train_sampler="user",
                                         reg_weight=0.001)))
    page_text = page.render_page(doc)
    assert "over each split's cold items only (`eval_candidates: cold`" in page_text
    rows = {line.split(" | ")[0][2:]: line for line in page_text.split("## Model settings", 1)[1].splitlines()
            if line.startswith(("| BPR |", "| MICRO |", "| LightGCN |"))}
    assert "`contrastive_mode=sampled`" in rows["MICRO"] and "contrastive_mode" not in rows["BPR"] + rows["LightGCN"]
    assert "`reg_weight=0.001`" in rows["MICRO"] and "`reg_weight=0.001`" in rows["LightGCN"]
    assert "reg_weight" not in rows["BPR"].split("overrides", 1)[1]
    for model in ("BPR", "MICRO", "LightGCN"):  # an overall key: every model reads it
        assert "`train_sampler=user`" in rows[model]
    old = {k: v for k, v in model_runs(doc, "BPR")[0]["settings"].items() if k != "eval_candidates"}
    for model in ("BPR", "MICRO", "LightGCN"):
        put_run(doc, dict(model_runs(doc, model)[0], settings=old))
    assert "over all items (`eval_candidates` not recorded by these runs)" in page.render_page(doc)


FORMAT_1_FILES = {  # single-seed results of format 1: the 20-epoch Baby page (kept as a fixture) and any shipped one
    "baby": Path(__file__).parent / "fixtures" / "baby-format1.json",
    "baby-cold": REPO / "results" / "baby-cold.json",
}


@pytest.mark.parametrize("name", sorted(FORMAT_1_FILES))
def test_results_of_the_old_format_still_render(tmp_path, name):
    """Results written by the single-seed format 1: --from-json reads and renders them."""
    shipped = FORMAT_1_FILES[name]
    if not shipped.is_file():
        pytest.skip(f"{shipped} is not shipped")
    original = json.loads(shipped.read_text())
    if original["format"] != "recbole-micro comparison 1":
        pytest.skip(f"{shipped} has been regenerated in format 2 (tested by test_shipped_pages_equal_their_json)")
    copy = tmp_path / f"{name}.json"
    shutil.copy(shipped, copy)
    compare_main(["--from-json", str(copy), "--out", str(tmp_path)])
    page_text = (tmp_path / f"{name}.md").read_text()
    doc = load_results(str(copy))
    assert doc["order"] == original["order"]
    for model in original["order"]:
        (run,) = model_runs(doc, model)
        assert run["test"] == original["runs"][model]["test"] and run["seed"] == original["runs"][model]["settings"]["seed"]
    assert_table_matches_json(page_text, doc)
    if "MICRO" in original["order"] and "LightGCN" in original["order"]:
        ratio = original["runs"]["MICRO"]["test"]["recall@20"] / original["runs"]["LightGCN"]["test"]["recall@20"]
        assert f"MICRO / LightGCN = {ratio:.3f}" in page_text  # one seed: the ratio without a spread
    assert "`test_mask_valid` not recorded" in page_text  # keys absent from old runs are stated as such


@pytest.mark.parametrize("name", ["baby", "baby-cold"])
def test_shipped_pages_equal_their_json(name):
    """A shipped page of format 2 is exactly what its JSON and per-user files render to (no hand edits, no
    stale page), and the per-user files it names are shipped."""
    shipped = REPO / "results" / f"{name}.json"
    if not shipped.is_file() or json.loads(shipped.read_text())["format"] != "recbole-micro comparison 2":
        pytest.skip(f"{shipped} is not a shipped format-2 results file")
    doc = load_results(str(shipped))
    for model in doc["order"]:
        for run in model_runs(doc, model, "ok"):
            assert (REPO / "results" / run["per_user"]["file"]).is_file(), run["per_user"]["file"]
    rendered = page.render_page(doc, f"{name}.png", out="results", data_dir=str(REPO / "results"))
    assert rendered == (REPO / "results" / f"{name}.md").read_text()


def test_from_json_of_a_file_named_for_another_dataset_does_not_overwrite_that_page(tmp_path, capsys):
    """``results/baseline-strength.json`` holds Baby runs: ``--dataset baseline-strength --from-json`` would have
    written them over ``results/baby.md``; it is refused in one line and nothing is written."""
    shutil.copy(REPO / "results" / "baby.json", tmp_path / "side-study.json")
    (tmp_path / "baby.md").write_text("the main page\n")
    with pytest.raises(SystemExit) as stop:
        compare_main(["--dataset", "side-study", "--from-json", "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {tmp_path / 'side-study.json'} holds the runs of dataset 'baby', not 'side-study': its page would "
        f"overwrite {tmp_path / 'baby.md'}; pass --dataset baby to re-render that page from this file"]
    assert (tmp_path / "baby.md").read_text() == "the main page\n" and not (tmp_path / "side-study.md").exists()


def test_a_second_job_leaves_a_run_another_job_is_training_alone(compared, tmp_path, monkeypatch, capsys):
    """The same job started twice: the second finds the run recorded as running, its checkpoint claimed by the
    first, and skips it (one line) instead of training it a second time into the same files."""
    _, _, overrides, doc = compared
    template = model_runs(doc, "BPR")[0]
    trained = []

    def fake_run_model(model, dataset, config_dict, config_files=None, prefix="", **kwargs):
        trained.append((prefix, kwargs["checkpoint_file"]))
        if len(trained) == 1:  # while the first job trains, the second starts
            compare.run_comparison("syn", ["BPR"], overrides=overrides, out=str(tmp_path), resume=True,
                                   command="job 2", seeds=[5])
        return dict(template, model=model, seed=5)

    monkeypatch.setattr(compare, "run_model", fake_run_model)
    compare.run_comparison("syn", ["BPR"], overrides=overrides, out=str(tmp_path), command="job 1", seeds=[5])
    assert len(trained) == 1  # the second job trained nothing
    checkpoint = trained[0][1]
    assert f"BPR seed 5: another job is training it (checkpoint {checkpoint}): skipped" in capsys.readouterr().out
    saved = load_results(str(tmp_path / "syn.json"))
    assert [r["status"] for r in model_runs(saved, "BPR")] == ["ok"]
    assert not os.path.exists(checkpoint + ".lock")  # the claim ends with the run


def test_side_by_side_append_jobs_keep_each_others_runs(compared, tmp_path, monkeypatch):
    """Two jobs appending to one dataset: each save re-reads the file, so neither loses the other's runs."""
    root, _, overrides, doc = compared
    template = model_runs(doc, "BPR")[0]

    def fake_run_model(model, dataset, config_dict, config_files=None, prefix="", **kwargs):
        if model == "LightGCN":  # meanwhile, another job appends NGCF
            compare.run_comparison("syn", ["NGCF"], overrides=overrides, out=str(tmp_path), append=True,
                                   command="job 2")
        return dict(template, model=model)

    monkeypatch.setattr(compare, "run_model", fake_run_model)
    compare.run_comparison("syn", ["BPR", "LightGCN"], overrides=overrides, out=str(tmp_path), append=True,
                           command="job 1")
    saved = json.loads((tmp_path / "syn.json").read_text())
    assert saved["order"] == ["BPR", "LightGCN", "NGCF"] and saved["commands"] == ["job 1", "job 2"]
    assert [r[0] for r in table_rows((tmp_path / "syn.md").read_text())[1]] == ["BPR", "LightGCN", "NGCF"]
    # a job without --append starts a new file
    compare.run_comparison("syn", ["MICRO"], overrides=overrides, out=str(tmp_path), command="job 3")
    assert json.loads((tmp_path / "syn.json").read_text())["order"] == ["MICRO"]


def test_unknown_model_is_one_line_before_anything_runs(compared, tmp_path, capsys):
    root, _, overrides, _ = compared
    argv = ["--dataset", "syn", "--models", "BPR,NoSuchModel", "--out", str(tmp_path / "out")]
    argv += [f"--{k}={v}" for k, v in overrides.items()]
    with pytest.raises(SystemExit) as stop:
        compare_main(argv)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "NoSuchModel" in lines[0]
    assert "Traceback" not in captured.out + captured.err
    assert not (tmp_path / "out").exists()  # refused up front: BPR did not train, nothing was written


def test_a_failing_run_is_one_line_and_the_others_go_on(compared, tmp_path, capsys, monkeypatch):
    root, _, overrides, _ = compared
    from recbole_micro import quick_start

    real = quick_start.run_recbole_micro

    def crash_for_bpr(model=None, **kwargs):
        if model == "BPR":
            raise RuntimeError("CUDA out of memory\n(a multi-line message)")
        return real(model=model, **kwargs)

    monkeypatch.setattr(quick_start, "run_recbole_micro", crash_for_bpr)
    doc = compare.run_comparison("syn", "BPR,LightGCN", epochs=1, overrides=overrides, out=str(tmp_path))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    failed = [line for line in captured.err.splitlines() if "FAILED" in line]
    assert failed == ["[compare 1/2] BPR FAILED: RuntimeError: CUDA out of memory (a multi-line message)"]
    assert model_runs(doc, "BPR")[0]["status"] == "failed" and model_runs(doc, "LightGCN")[0]["status"] == "ok"
    assert "- BPR (seed 123): RuntimeError: CUDA out of memory" in (tmp_path / "syn.md").read_text()


def test_resume_keeps_a_finished_run_only_if_it_trained_with_the_same_values(compared, tmp_path, capsys):
    r"""``--resume`` keeps a finished (row, seed) run; when its tuned or overridden values differ from this run's
    (a tuning export whose best point moved, another ``--key=value``), it is trained again, with one line."""
    root, out, overrides, _ = compared
    shutil.copytree(out, tmp_path / "res")
    kept = compare.run_comparison("syn", "BPR", epochs=2, overrides=overrides, out=str(tmp_path / "res"), resume=True)
    assert "finished in an earlier sitting, kept" in capsys.readouterr().out
    before = model_runs(kept, "BPR")[0]
    moved = compare.run_comparison("syn", "BPR", epochs=2, overrides=dict(overrides, learning_rate=0.01),
                                   out=str(tmp_path / "res"), resume=True)
    printed = capsys.readouterr().out
    assert ("[compare 1/1] BPR: the earlier run trained with other values (learning_rate: 0.001 then, 0.01 now): "
            "trained again") in printed
    after = model_runs(moved, "BPR")[0]
    assert after["hyper"]["learning_rate"] == 0.01 and after["test"] != before["test"]
    assert compare.changed_values(after, dict(overrides, learning_rate=0.01, seed=7, data_path="/elsewhere")) == {}
    assert compare.changed_values(after, {"epochs": 3, "knn_k": 5}) == {"epochs": (2, 3)}  # unrecorded: not compared
