"""Seeds, uncertainty and resume in the comparison: one run per model and seed, mean ± std equal to the
JSON, paired tests equal to scipy's on the same pairs, and an interrupted comparison resumed to the
same JSON as an uninterrupted one."""

import json
import multiprocessing
import os
import re
import time

import numpy as np
import pytest
from scipy import stats

from conftest import run_config
from recbole_micro.data.synthetic import make_synthetic_dataset
from recbole_micro.tools import compare, page
from recbole_micro.tools.files import atomic_write, locked
from recbole_micro.tools.results import load_per_user, load_results, model_runs

SMALL = dict(n_users=80, n_items=100, n_clusters=8, per_user=(6, 10))
SEEDS = [1, 2, 3]
MODELS = ["BPR", "MICRO"]
EPOCHS = 3
CELL = re.compile(r"^([-\d.]+) ± ([-\d.]+)$")


def comparison(root, out, **kwargs):
    return compare.run_comparison("syn", MODELS, epochs=EPOCHS, overrides=run_config(root, eval_step=1),
                                  out=str(out), seeds=",".join(map(str, SEEDS)), command="seeds job", **kwargs)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    root = tmp_path_factory.mktemp("seeds")
    make_synthetic_dataset(str(root), "syn", **SMALL)
    out = root / "results"
    comparison(root, out)
    return root, out, load_results(str(out / "syn.json"))


def section_table(markdown, title):
    """``(header, rows)`` of the first table under the heading ``title`` (cells stripped of bold)."""
    section = markdown.split(title, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return header, [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in lines[2:]]


def test_json_holds_one_run_per_model_and_seed(seeded):
    _, out, doc = seeded
    assert doc["order"] == MODELS and doc["seeds"] == SEEDS
    for model in MODELS:
        runs = model_runs(doc, model)
        assert [r["seed"] for r in runs] == SEEDS and list(doc["runs"][model]) == [str(s) for s in SEEDS]
        assert all(r["status"] == "ok" and r["settings"]["seed"] == r["seed"] for r in runs)
        assert len({r["checkpoint"] for r in runs}) == len(SEEDS)
        # the seed matters: the runs are not copies of each other
        assert len({json.dumps(r["test"], sort_keys=True) for r in runs}) > 1


def test_page_mean_and_std_equal_those_recomputed_from_the_json(seeded):
    _, out, doc = seeded
    markdown = (out / "syn.md").read_text()
    header, rows = section_table(markdown, "## Results")
    assert [r[0] for r in rows] == ["BPR", "MICRO (full contrastive loss)"]  # MICRO's row names its loss
    metric_columns = [(i, c) for i, c in enumerate(header) if c.split(" ")[0] in ("test", "valid")]
    assert len(metric_columns) == 12
    names = {"R": "recall", "N": "ndcg", "P": "precision"}
    for row in rows:
        runs = model_runs(doc, row[0].split(" (")[0])
        assert row[1] == ", ".join(map(str, SEEDS))
        for index, column in metric_columns:
            split, short = column.split(" ")
            key = f"{names[short[0]]}@{short.split('@')[1]}"
            values = [r[split][key] for r in runs]
            mean, std = CELL.match(row[index]).groups()
            assert float(mean) == pytest.approx(np.mean(values), abs=5e-5), (row[0], column)
            assert float(std) == pytest.approx(np.std(values, ddof=1), abs=5e-5), (row[0], column)
        assert row[header.index("epochs run / budget")].startswith(
            ", ".join(str(r["epochs_run"]) for r in runs) + f" / {EPOCHS}")


def test_chart_bars_and_error_bars_equal_the_json(seeded):
    _, out, doc = seeded
    ax = page.plot_results(doc).axes[0]
    bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
    for label, key in (("Recall@20", "recall@20"), ("NDCG@20", "ndcg@20")):
        values = [[r["test"][key] for r in model_runs(doc, m)] for m in MODELS]
        heights = [p.get_height() for p in bars[label].patches]
        assert heights == pytest.approx([np.mean(v) for v in values], abs=1e-12)
        segments = bars[label].errorbar.lines[2][0].get_segments()
        half_widths = [(s[1][1] - s[0][1]) / 2 for s in segments]
        assert half_widths == pytest.approx([np.std(v, ddof=1) for v in values], abs=1e-12)


def paired_users(out, doc, metric="recall@20"):
    """Per-user values of MICRO and BPR, paired by token and averaged over seeds, recomputed independently."""
    tables = {}
    for model in MODELS:
        per_seed = []
        for run in model_runs(doc, model):
            data = load_per_user(str(out), run)
            per_seed.append(dict(zip(data["users"].tolist(), data[metric].astype(np.float64).tolist())))
        users = set.intersection(*(set(d) for d in per_seed))
        tables[model] = {u: sum(d[u] for d in per_seed) / len(per_seed) for u in users}
    users = sorted(set(tables["MICRO"]) & set(tables["BPR"]))
    return users, [tables["MICRO"][u] for u in users], [tables["BPR"][u] for u in users]


def test_per_user_values_average_to_the_reported_test_metric(seeded):
    _, out, doc = seeded
    for model in MODELS:
        for run in model_runs(doc, model):
            data = load_per_user(str(out), run)
            assert run["per_user"]["users"] == len(data["users"]) == SMALL["n_users"]
            assert len(set(data["users"].tolist())) == len(data["users"])
            for key in ("recall@20", "ndcg@20"):
                assert float(np.mean(data[key])) == pytest.approx(run["test"][key], abs=5e-5), (model, key)


def test_paired_tests_equal_scipy_on_the_same_pairs(seeded):
    _, out, doc = seeded
    markdown = (out / "syn.md").read_text()
    header, rows = section_table(markdown, "## MICRO against each baseline")
    (row,) = rows
    cells = dict(zip(header, row))
    assert cells["baseline"] == "BPR" and cells["seeds paired"] == ", ".join(map(str, SEEDS))

    micro = [r["test"]["recall@20"] for r in model_runs(doc, "MICRO")]
    bpr = [r["test"]["recall@20"] for r in model_runs(doc, "BPR")]
    by_seed = stats.ttest_rel(micro, bpr)
    t, p = cells["paired t over seeds: t, p"].split(", ")
    assert float(t) == pytest.approx(by_seed.statistic, abs=1e-3)
    assert float(p) == pytest.approx(by_seed.pvalue, rel=5e-3)

    users, a, b = paired_users(out, doc)
    by_user = stats.wilcoxon(a, b)
    pairs, nonzero = re.match(r"([\d,]+) \(([\d,]+)\)", cells["users paired (non-zero differences)"]).groups()
    assert int(pairs.replace(",", "")) == len(users) == SMALL["n_users"]
    assert int(nonzero.replace(",", "")) == int(np.count_nonzero(np.subtract(a, b)))
    assert float(cells["Wilcoxon over users: p"]) == pytest.approx(by_user.pvalue, rel=5e-3)

    ratios = [x / y for x, y in zip(micro, bpr)]
    mean, std = cells["ratio MICRO / baseline"].split(" ± ")
    assert float(mean) == pytest.approx(np.mean(ratios), abs=5e-4) and float(std) == pytest.approx(
        np.std(ratios, ddof=1), abs=5e-4)
    significant = np.mean(micro) > np.mean(bpr) and by_seed.pvalue < 0.05 and by_user.pvalue < 0.05
    behind = np.mean(micro) < np.mean(bpr) and by_seed.pvalue < 0.05 and by_user.pvalue < 0.05
    # both tests ran: never "untested"
    assert cells["significant"] == ("yes" if significant else "no: the baseline is significantly ahead" if behind
                                    else "no")
    headline = next(line for line in markdown.splitlines() if line.startswith("**Test Recall@20 ratio:"))
    assert f"MICRO / BPR (the strongest baseline) = {cells['ratio MICRO / baseline']}" in headline  # the only one
    assert "mean ± std over seeds of the per-seed ratio" in headline
    assert ("significant over BPR" if significant else "significantly behind BPR" if behind
            else "not significant over BPR") in headline
    assert "scipy.stats.ttest_rel" in markdown and "scipy.stats.wilcoxon" in markdown


class Interrupt(KeyboardInterrupt):
    """Ctrl-C in the middle of MICRO's first run."""


def test_interrupted_comparison_resumes_to_the_same_json(seeded, tmp_path, monkeypatch):
    root, _, reference = seeded
    from recbole_micro import quick_start
    from recbole_micro.trainer import SafeCheckpointMixin

    original_epoch = SafeCheckpointMixin._train_epoch
    state = {"armed": True}

    def ctrl_c_in_micro(self, train_data, epoch_idx, *args, **kwargs):
        if state["armed"] and self.config["model"] == "MICRO" and self.config["seed"] == SEEDS[0] and epoch_idx == 2:
            state["armed"] = False
            raise Interrupt
        return original_epoch(self, train_data, epoch_idx, *args, **kwargs)

    monkeypatch.setattr(SafeCheckpointMixin, "_train_epoch", ctrl_c_in_micro)
    out = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        comparison(root, out)
    stopped = load_results(str(out / "syn.json"))
    assert [r["status"] for r in model_runs(stopped, "BPR")] == ["ok"] * len(SEEDS)
    (running,) = model_runs(stopped, "MICRO")
    assert running["status"] == "interrupted" and running["seed"] == SEEDS[0]
    assert (out / "syn.md").read_text().count("--resume") >= 1  # the page says how to continue

    runs = []
    real = quick_start.run_recbole_micro

    def spy(**kwargs):
        runs.append((kwargs["model"], kwargs["config_dict"]["seed"], kwargs.get("resume")))
        return real(**kwargs)

    monkeypatch.setattr(quick_start, "run_recbole_micro", spy)
    comparison(root, out, resume=True)
    # finished runs kept, the interrupted one continued from its checkpoint, the rest run fresh
    assert [(m, s) for m, s, _ in runs] == [("MICRO", s) for s in SEEDS]
    assert runs[0][2] is not None and runs[0][2].startswith(running["checkpoint"][: -len(".pth")])
    assert all(r is None for _, _, r in runs[1:])
    resumed = load_results(str(out / "syn.json"))
    assert resumed["order"] == reference["order"] and resumed["seeds"] == reference["seeds"]
    for model in MODELS:
        for mine, theirs in zip(model_runs(resumed, model), model_runs(reference, model)):
            for key in ("status", "seed", "valid", "test", "best_valid_score", "epochs_run", "best_epoch"):
                assert mine[key] == theirs[key], (model, mine["seed"], key)
            assert np.array_equal(load_per_user(str(out), mine)["recall@20"],
                                  load_per_user(str(root / "results"), theirs)["recall@20"])
    assert model_runs(resumed, "MICRO")[0]["sittings"] == 2


def test_a_named_variant_gets_its_own_row_and_is_tested_against_micro(seeded, tmp_path):
    """``--name``: MICRO with a switch changed is filed beside MICRO (its own row, checkpoints and per-user
    files), the model's own runs stay untouched, and the page tests MICRO against it like a baseline."""
    import shutil

    root, out, reference = seeded
    mine = tmp_path / "results"
    shutil.copytree(out, mine)
    overrides = dict(run_config(root, eval_step=1), lambda_coeff=1.0, contrastive_mode="sampled")
    compare.run_comparison("syn", ["MICRO"], epochs=EPOCHS, overrides=overrides, out=str(mine), seeds="1,2",
                           append=True, command="variant job", name="MICRO-lambda1")
    doc = load_results(str(mine / "syn.json"))
    assert doc["order"] == MODELS + ["MICRO-lambda1"]
    for model in MODELS:
        assert doc["runs"][model] == reference["runs"][model]
    variant = model_runs(doc, "MICRO-lambda1")
    assert [(r["model"], r["name"], r["seed"], r["status"]) for r in variant] == [
        ("MICRO", "MICRO-lambda1", 1, "ok"), ("MICRO", "MICRO-lambda1", 2, "ok")]
    assert all(r["overrides"]["lambda_coeff"] == 1.0 and r["contrastive_mode"] == "sampled" for r in variant)
    assert all("MICRO-lambda1-seed" in r["checkpoint"] for r in variant)
    assert [r["per_user"]["file"] for r in variant] == ["syn-per-user/MICRO-lambda1-seed1.npz",
                                                        "syn-per-user/MICRO-lambda1-seed2.npz"]
    # another lambda gives other numbers: the variant is a run of its own, not a copy of MICRO's
    assert [r["test"] for r in variant] != [r["test"] for r in model_runs(doc, "MICRO")[:2]]

    markdown = (mine / "syn.md").read_text()
    _, rows = section_table(markdown, "## Results")
    assert [r[0] for r in rows] == ["BPR", "MICRO (full contrastive loss)", "MICRO-lambda1 (sampled contrastive loss)"]
    header, rows = section_table(markdown, "## MICRO against each baseline")
    cells = dict(zip(header, rows[1]))
    assert cells["baseline"] == "MICRO-lambda1" and cells["seeds paired"] == "1, 2"
    micro = [r["test"]["recall@20"] for r in model_runs(doc, "MICRO")[:2]]
    lam = [r["test"]["recall@20"] for r in variant]
    mean = float(cells["ratio MICRO / baseline"].split(" ± ")[0])
    assert mean == pytest.approx(np.mean(np.divide(micro, lam)), abs=5e-4)

    again = compare.run_comparison("syn", ["MICRO"], epochs=EPOCHS, overrides=overrides, out=str(mine), seeds="1,2",
                                   resume=True, command="variant job", name="MICRO-lambda1")
    assert model_runs(again, "MICRO-lambda1") == variant  # resume finds the variant's runs under its name


@pytest.mark.parametrize("models, name, fragment", [
    (["BPR", "MICRO"], "MICRO-x", "labels the runs of one model"),
    (["MICRO"], "MICRO", "differ from the model's name"),
    (["MICRO"], "../MICRO", "must start with a letter"),
    (["MICRO"], "M" * 65, "at most 64"),
])
def test_a_bad_variant_name_is_one_clear_line(models, name, fragment, tmp_path):
    from recbole_micro.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(fragment)) as caught:
        compare.run_comparison("syn", models, out=str(tmp_path), name=name)
    assert "\n" not in str(caught.value) and "--name" in str(caught.value)
    assert not any(tmp_path.iterdir())  # nothing written


def test_only_models_with_a_contrastive_switch_name_their_loss():
    """MICRO's rows say which loss ran (recorded, overridden or the yaml default); LATTICE and BPR, which
    have no such switch, get no label even when a job passed them the override."""
    assert page.mode_text([{"model": "MICRO"}]) == "full contrastive loss"  # MICRO.yaml's default
    assert page.mode_text([{"model": "MICRO", "overrides": {"contrastive_mode": "sampled"}}]) == "sampled contrastive loss"
    assert page.mode_text([{"model": "MICRO", "contrastive_mode": "sampled"},
                           {"model": "MICRO", "contrastive_mode": "full"}]) == "full/sampled contrastive loss"
    for model in ("LATTICE", "BPR", "LightGCN"):
        assert page.mode_text([{"model": model, "overrides": {"contrastive_mode": "sampled"}}]) == ""


def _add_runs(path, worker, count):
    """Read-modify-write ``count`` entries into a shared JSON under ``locked`` (one process of the test below)."""
    for i in range(count):
        with locked(path):
            doc = json.loads(open(path).read()) if os.path.exists(path) else {}
            doc[f"{worker}-{i}"] = i
            time.sleep(0.001)  # widen the window between read and write
            atomic_write(path, json.dumps(doc))


def test_jobs_side_by_side_keep_each_others_runs(tmp_path):
    """Two processes updating one results file under ``locked`` (as two comparison jobs do) lose nothing."""
    path = str(tmp_path / "baby.json")
    # fresh interpreters: a fork of this multi-threaded process (torch's threads, an earlier test's Ray) may
    # inherit a lock held by another thread and hang, or inherit Ray's signal handlers
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_add_runs, args=(path, w, 40)) for w in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    assert sorted(json.loads(open(path).read())) == sorted(f"{w}-{i}" for w in "ab" for i in range(40))


def test_the_headline_names_the_strongest_other_model_not_a_variant_of_micro():
    r"""Beside LightGCN and LATTICE, the headline states MICRO against the best other model (highest mean test
    value over the shared seeds); a MICRO variant row (``MICRO-lambda1``), however high, is not a baseline."""
    from recbole_micro.tools import page
    from recbole_micro.tools.results import new_doc, put_run

    doc = new_doc("syn")
    means = {"LightGCN": 0.07, "LATTICE": 0.08, "BPR": 0.083, "MICRO-lambda1": 0.095}
    for row, mean in means.items():
        model = row.split("-")[0]
        put_run(doc, dict({"model": model, "seed": 1, "status": "ok"}, **({"name": row} if row != model else {})))
    results = {row: {"baseline": [mean, mean + 0.002]} for row, mean in means.items()}
    assert page.strongest_baseline(doc, results) == "BPR"
    del results["BPR"]
    assert page.strongest_baseline(doc, results) == "LATTICE"
    assert page.strongest_baseline(doc, {"MICRO-lambda1": results["MICRO-lambda1"]}) is None


@pytest.mark.parametrize("shift, significant, behind", [(+0.02, True, False), (-0.02, False, True), (0.0, False, False)])
def test_a_significant_loss_is_stated_as_one(shift, significant, behind):
    """``stats.against``: ``significant`` when the target is higher and both tests give p < 0.05, ``behind`` when it
    is lower and both do; noise around a tie is neither."""
    from recbole_micro.tools import stats as page_stats

    rng = np.random.default_rng(0)
    seeds = [1, 2, 3, 4]
    base = [{"seed": s, "test": {"recall@20": 0.10 + 0.001 * k}} for k, s in enumerate(seeds)]
    noise = [0.0004, -0.0003, 0.0002, -0.0001]
    target = [{"seed": s, "test": {"recall@20": r["test"]["recall@20"] + shift + e}} for s, r, e in zip(seeds, base, noise)]
    users = rng.random(500)
    per_user = lambda offset: {str(s): {"users": np.arange(500).astype(str), "recall@20": users + offset} for s in seeds}
    user_shift = shift + rng.normal(0, 0.01, 500)
    result = page_stats.against(target, base, per_user(user_shift), per_user(0.0))
    assert result["significant"] is significant and result["behind"] is behind
