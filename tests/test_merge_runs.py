"""``benchmarks/merge_runs.py``: runs made on a lent GPU folded into this machine's ``$WORK``."""

import io
import json
import os
import sys
import tarfile

import numpy as np
import pytest

from conftest import REPO
from recbole_micro.tools.export import TuningExport, load_export, trial_entry
from recbole_micro.tools.results import (
    get_run, json_path, load_per_user, load_results, new_doc, per_user_file, put_run, save_per_user, save_results,
)

sys.path.insert(0, str(REPO / "benchmarks"))
import merge_runs  # noqa: E402


def run(model, seed, status="ok", recall=0.05, base=None, users=("u1", "u2")):
    entry = {"model": model, "seed": seed, "status": status}
    if status == "ok":
        entry["test_result"] = {"recall@20": recall}
        if base is not None:
            relative = per_user_file("baby", model, seed)
            save_per_user(base, relative, {"users": list(users), "recall@20": [recall, 2 * recall]})
            entry["per_user"] = {"file": relative, "metrics": ["recall@20"], "users": len(users)}
    return entry


def comparison(folder, *runs):
    doc = new_doc("baby")
    for entry in runs:
        put_run(doc, entry)
    save_results(doc, str(folder))
    return doc


def search(folder, model, scores, running=False):
    export = TuningExport(str(folder / f"{model}-baby"), {"model": model, "dataset": "baby",
                                                          "valid_metric": "recall@20", "valid_metric_bigger": True})
    for k, score in enumerate(scores):
        export.add(trial_entry({"learning_rate": 10.0 ** -(k + 2)}, {"best_valid_score": score}))
    if running:
        export.start({"learning_rate": 0.5}, "/work/runs/saved/x.pth")
    return load_export(export.json_path)


@pytest.fixture()
def machines(tmp_path):
    there, here = tmp_path / "there", tmp_path / "here"
    comparison(here / "compare", run("MICRO", 123, recall=0.09), run("FREEDOM", 123, status="running"))
    comparison(there / "compare", run("MICRO", 123, recall=0.5), run("FREEDOM", 123, recall=0.08, base=there / "compare"),
               run("LGMRec", 7, recall=0.1, base=there / "compare"), run("BM3", 123, status="failed"))
    search(here / "tuning", "FREEDOM", [0.07])
    search(there / "tuning", "FREEDOM", [0.07, 0.08, 0.06])
    search(here / "tuning", "BM3", [0.06], running=True)
    search(there / "tuning", "BM3", [0.06, 0.09])
    return there, here


def test_finished_runs_and_longer_searches_are_taken_the_rest_kept(machines, capsys):
    there, here = machines
    assert merge_runs.main([str(there), "--work", str(here)]) == 0
    doc = load_results(json_path(str(here / "compare"), "baby"))
    assert get_run(doc, "MICRO", 123)["test_result"]["recall@20"] == 0.09  # finished here: ours kept
    assert get_run(doc, "FREEDOM", 123)["status"] == "ok"  # running here, finished there: taken
    assert get_run(doc, "LGMRec", 7)["test_result"]["recall@20"] == 0.1  # new row
    assert get_run(doc, "BM3", 123) is None  # failed there: not taken
    values = load_per_user(str(here / "compare"), get_run(doc, "LGMRec", 7))
    np.testing.assert_allclose(values["recall@20"], [0.1, 0.2])
    assert [t["best_valid_score"] for t in load_export(str(here / "tuning" / "FREEDOM-baby.json"))["trials"]] == [
        0.07, 0.08, 0.06]
    assert (here / "tuning" / "FREEDOM-baby.txt").read_text() == (there / "tuning" / "FREEDOM-baby.txt").read_text()
    assert len(load_export(str(here / "tuning" / "BM3-baby.json"))["trials"]) == 1  # a search is under way here
    assert capsys.readouterr().out.splitlines() == [
        "[merge] baby: FREEDOM seed 123 added",
        "[merge] baby: LGMRec seed 7 added",
        "[merge] tuning/BM3-baby.json: 2 finished trials there, 1 here: kept ours",
        "[merge] tuning/FREEDOM-baby.json: 3 finished trials there, 1 here: taken",
    ]
    assert merge_runs.main([str(there), "--work", str(here)]) == 0  # again: nothing new
    assert "added" not in capsys.readouterr().out


def test_the_packed_archive_merges_like_the_folder(machines, tmp_path):
    there, here = machines
    tarball = tmp_path / "runs.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        for folder in ("compare", "tuning"):
            archive.add(there / folder, arcname=folder)
    assert merge_runs.main([str(tarball), "--work", str(here)]) == 0
    assert get_run(load_results(json_path(str(here / "compare"), "baby")), "LGMRec", 7)["status"] == "ok"


@pytest.mark.parametrize("member", ["../escape.json", "/etc/x.json", "elsewhere/x.json", "compare/link"])
def test_an_archive_with_anything_but_plain_files_under_its_folders_is_one_line(tmp_path, capsys, member):
    tarball = tmp_path / "runs.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        info = tarfile.TarInfo(member)
        if member.endswith("link"):
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(info)
        else:
            data = json.dumps({"format": "x"}).encode()
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    assert merge_runs.main([str(tarball), "--work", str(tmp_path / "here")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tarball}: member '{member}' is not a plain file under compare/ or tuning/; pass the "
                   "archive gpu_converged.sh wrote"]
    assert not os.path.exists(tmp_path / "here")
