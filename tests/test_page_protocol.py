"""The Protocol and Model-settings sections say one true thing about settings that differ across rows."""

import json

from conftest import REPO
from recbole_micro.tools import page
from recbole_micro.tools.results import load_results, model_runs


def test_a_setting_that_differs_per_row_is_listed_per_row_not_called_unrecorded():
    doc = load_results(str(REPO / "results" / "baby.json"))
    samplers = {m: r["settings"]["train_sampler"] for m in doc["order"] for r in model_runs(doc, m, "ok")[:1]}
    assert len(set(samplers.values())) > 1  # LightGCN-interaction trains with RecBole's sampler, the others not
    text = page.render_page(doc, "baby.png", out="results", data_dir=str(REPO / "results"))
    training = next(line for line in text.splitlines() if line.startswith("- **Training:**"))
    assert "not recorded" not in training and "per model (`train_sampler`" in training
    differing = next(line for line in text.splitlines() if line.startswith("- **Not identical across models:**"))
    assert all(f"{m} {json.dumps(v)}" in differing for m, v in samplers.items())
    settings = text[text.index("## Model settings"):]
    row = next(line for line in settings.splitlines() if line.startswith("| LightGCN-interaction |"))
    assert "`train_sampler=interaction`" in row  # an overall.yaml key: every model reads it


def test_batch_size_and_negatives_that_differ_per_model_are_not_given_one_value():
    doc = load_results(str(REPO / "results" / "baby.json"))
    run = model_runs(doc, "LATTICE", "ok")[0]  # as BM3 trains: batches of 2048 pairs, no negatives
    run["settings"].update(train_batch_size=2048, train_neg_sample_args=None)
    text = page.render_page(doc, "baby.png", out="results", data_dir=str(REPO / "results"))
    training = next(line for line in text.splitlines() if line.startswith("- **Training:**"))
    assert "per model (`train_batch_size`" in training and "per model (`train_neg_sample_args`" in training
    assert "1024" not in training and "?" not in training
    differing = next(line for line in text.splitlines() if line.startswith("- **Not identical across models:**"))
    assert "LATTICE 2048" in differing and "MICRO 1024" in differing and "LATTICE null" in differing


def test_a_setting_that_differs_between_one_models_seeds_is_listed_with_its_seeds():
    """Runs recorded before ``tie_break`` existed ranked ties by item id (``index``); a model whose later seeds ran
    with ``random`` shows each value with its seeds, and the Evaluation line points to that list."""
    doc = load_results(str(REPO / "results" / "baby.json"))
    for model in doc["order"]:  # as before tie_break existed
        for run in model_runs(doc, model):
            (run.get("settings") or {}).pop("tie_break", None)
    runs = model_runs(doc, "FREEDOM", "ok")
    assert len(runs) == 3
    runs[2]["settings"]["tie_break"] = "random"
    text = page.render_page(doc, "baby.png", out="results", data_dir=str(REPO / "results"))
    evaluation = next(line for line in text.splitlines() if line.startswith("- **Evaluation:**"))
    assert "equal scores ranked per model (`tie_break`, listed under *Not identical across models*)" in evaluation
    differing = next(line for line in text.splitlines() if line.startswith("- **Not identical across models:**"))
    seeds = [r["seed"] for r in runs]
    assert (f'FREEDOM "index" (seeds {seeds[0]}, {seeds[1]}) / "random" (seed {seeds[2]})' in differing
            and 'MICRO "index"' in differing)
    runs[2]["settings"]["tie_break"] = "index"  # every run alike: one value in the Evaluation line
    text = page.render_page(doc, "baby.png", out="results", data_dir=str(REPO / "results"))
    assert "equal scores ranked by item id (`tie_break: index`" in text and "`tie_break`:" not in text


def variants_table(text):
    section = text[text.index("## Variants of one model, chosen on validation"):]
    section = section[:section.index("|\n\n", section.index("| model |")) + 1]  # the first table only
    rows = [line[2:-2].split(" | ") for line in section.splitlines()
            if line.startswith("| ") and not line.startswith("| model")]
    return {row[0]: row[1:] for row in rows}


def test_variants_of_one_model_are_chosen_on_validation_over_shared_seeds_never_on_test():
    doc = load_results(str(REPO / "results" / "baby-cold.json"))
    plain, zero = model_runs(doc, "VBPR", "ok"), model_runs(doc, "VBPR-zero", "ok")
    for run, valid, test in zip(plain, (0.30, 0.20, 0.25), (0.01, 0.01, 0.01)):
        run["best_valid_score"], run["test"]["recall@20"] = valid, test
    for run, valid, test in zip(zero, (0.29, 0.21, 0.24), (0.90, 0.90, 0.90)):  # the test winner, valid loser
        run["best_valid_score"], run["test"]["recall@20"] = valid, test
    seeds = [str(r["seed"]) for r in plain]
    table = variants_table(page.render_page(doc, "baby-cold.png", out="results", data_dir=str(REPO / "results")))
    assert table["VBPR"] == [", ".join(seeds), "VBPR 0.2500, VBPR-zero 0.2467", "VBPR", "0.0100"]

    del doc["runs"]["VBPR-zero"][seeds[0]]  # VBPR-zero without the first seed: the choice uses the seeds both rows ran
    zero.pop(0)
    table = variants_table(page.render_page(doc, "baby-cold.png", out="results", data_dir=str(REPO / "results")))
    assert table["VBPR"] == [", ".join(seeds[1:]), "VBPR 0.2250, VBPR-zero 0.2250", "VBPR", "0.0100"]
    zero[0]["best_valid_score"] = 0.2101
    table = variants_table(page.render_page(doc, "baby-cold.png", out="results", data_dir=str(REPO / "results")))
    assert table["VBPR"][1:] == ["VBPR 0.2250, VBPR-zero 0.2251", "VBPR-zero", "0.9000"]
    # a model with one row has no line; BPR and BPR-user share their three seeds
    assert "FREEDOM" not in table and table["BPR"][2] == "BPR"
    for seed in seeds[1:]:  # rows with no seed in common: nothing to choose on
        del doc["runs"]["VBPR"][seed]
    table = variants_table(page.render_page(doc, "baby-cold.png", out="results", data_dir=str(REPO / "results")))
    assert table["VBPR"] == ["none: not comparable", "–", "–", "–"]


def test_when_validation_chooses_a_variant_of_micro_it_is_tested_against_each_models_chosen_row():
    """MICRO-zero here is a copy of MICRO's runs with a higher validation score: validation chooses it, and its
    table against every other model's chosen row (VBPR-zero, not VBPR; BPR, not BPR-user) repeats, number for
    number, MICRO's rows of the main table for those baselines."""
    import copy

    doc = load_results(str(REPO / "results" / "baby-cold.json"))
    for row in [r for r in doc["order"] if r != "MICRO" and r.startswith("MICRO-")]:  # MICRO's variants, if run
        doc["order"].remove(row)
        del doc["runs"][row]
    text = page.render_page(doc, "baby-cold.png", out="results", data_dir=str(REPO / "results"))
    assert "Validation chooses" not in text  # MICRO itself is chosen: the main table already has every pair
    doc["runs"]["MICRO-zero"] = copy.deepcopy(doc["runs"]["MICRO"])
    for run in doc["runs"]["MICRO-zero"].values():
        run["name"], run["best_valid_score"] = "MICRO-zero", run["best_valid_score"] + 0.1
    doc["order"].append("MICRO-zero")
    text = page.render_page(doc, "baby-cold.png", out="results", data_dir=str(REPO / "results"))
    variants = text[text.index("Validation chooses MICRO-zero for MICRO"):]
    variants = variants[:variants.index("\n## ")]
    chosen_rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in variants.splitlines()
                   if line.startswith("| ") and not line.startswith("| baseline")}
    main = text[text.index("## MICRO against each baseline"):text.index("## Variants")]
    main_rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in main.splitlines()
                 if line.startswith("| ") and not line.startswith("| baseline")}
    classes = {runs[0]["model"] for row in doc["order"] if (runs := model_runs(doc, row, "ok"))} - {"MICRO"}
    assert len(chosen_rows) == len(classes) and "VBPR-zero" in chosen_rows and "VBPR" not in chosen_rows
    assert "BPR" in chosen_rows and "BPR-user" not in chosen_rows and "MICRO-lambda1" not in chosen_rows
    assert all(chosen_rows[row] == main_rows[row] for row in chosen_rows)


def test_a_one_epoch_model_is_named_beside_the_epoch_budget():
    """RecBole trains EASE, ItemKNN, ... in one closed-form epoch: the budget stays the other models' one number,
    with them named beside it, and the validation interval is still stated."""
    doc = load_results(str(REPO / "results" / "baby.json"))
    doc["order"] = [m for m in doc["order"] if m != "EASE"]
    doc["runs"].pop("EASE", None)
    run = dict(model_runs(doc, "BPR", "ok")[0], model="EASE", epoch_budget=1, epochs_run=1, early_stopped=False)
    doc["runs"]["EASE"], doc["order"] = {str(run["seed"]): run}, doc["order"] + ["EASE"]
    text = page.render_page(doc, "baby.png", out="results", data_dir=str(REPO / "results"))
    assert "- **Epoch budget:** 1000 (EASE: 1, computed in one pass, validated after it); validation every 5 epochs" \
        in text
    row = next(line for line in text.splitlines() if line.startswith("| EASE |"))
    assert "| 1 / 1 |" in row and "early stop" not in row
