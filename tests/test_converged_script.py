"""``benchmarks/converged.sh``: the job list, and ``TUNED_ON`` (cold-start jobs on Baby's tuned points)."""

import os
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "converged.sh"


def converged(tmp_path, *args, **env):
    environment = dict(os.environ, WORK=str(tmp_path / "runs"), PY=sys.executable, **env)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=120)


def test_unknown_job_is_one_line_listing_the_jobs(tmp_path):
    done = converged(tmp_path, "baby", "native")  # the retired job: LightGCN now runs natively in `baselines`
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: unknown job 'native' (baselines | multimodal | full | lambda | mmbaselines | untrained | publish | "
        "restore)"]
    assert not (tmp_path / "runs").exists()  # refused before anything is written (no data needed either)


def test_unknown_untrained_rule_is_one_line(tmp_path):
    done = converged(tmp_path, "baby-cold", "untrained", UNTRAINED_RULE="keep")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: UNTRAINED_RULE is 'keep'; use zero or content (untrained_item_ids other than keep)"]
    assert not (tmp_path / "runs").exists()


def test_tuned_on_another_dataset_needs_that_search(tmp_path, shared_data):
    r"""With ``TUNED_ON=baby`` a cold-start job searches nothing: a missing Baby export stops it with one line
    before any training, naming the file to produce."""
    done = converged(tmp_path, "baby-cold", "baselines", TUNED_ON="baby", SHARED=str(shared_data / "baby"))
    export = tmp_path / "runs" / "tuning" / "BPR-baby.json"
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: TUNED_ON=baby but {export} does not exist: run that search first")
    assert not (tmp_path / "runs" / "compare" / "baby-cold.json").exists()  # nothing trained, nothing written
    assert not list((tmp_path / "runs" / "tuning").iterdir())
