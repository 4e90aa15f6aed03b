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
