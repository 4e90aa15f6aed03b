"""``benchmarks/converged.sh``: the job list, ``TUNED_ON`` (cold-start jobs on Baby's tuned points) and ``SHARD``
(a search split across jobs)."""

import os
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "benchmarks" / "converged.sh"


def converged(tmp_path, *args, **env):
    environment = dict(os.environ, **dict(dict(WORK=str(tmp_path / "runs"), PY=sys.executable), **env))
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


def recording_python(tmp_path):
    """A stand-in for the interpreter that records each command line the script runs (nothing trains)."""
    log = tmp_path / "commands.log"
    stub = tmp_path / "python"
    stub.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n')
    stub.chmod(0o755)
    return str(stub), log


def test_shard_jobs_split_the_search_and_the_whole_job_reuses_them(tmp_path):
    stub, log = recording_python(tmp_path)
    tuning = tmp_path / "runs" / "tuning"
    for k in (1, 2):
        done = converged(tmp_path, "baby", "baselines", PY=stub, MODELS="LightGCN", SHARD=f"{k}/2")
        assert done.returncode == 0, done.stderr
    commands = log.read_text().splitlines()
    searches = [c for c in commands if c.startswith("run_hyper.py")]
    assert len(searches) == 2 and not any(c.startswith("run_compare.py") for c in commands)  # shards tune only
    for k, command in zip((1, 2), searches):
        assert f"--shard {k}/2 --output_file {tuning}/LightGCN-baby-shard{k}of2 --resume" in command

    for k in (1, 2):  # what the shard jobs would have written
        (tuning / f"LightGCN-baby-shard{k}of2.json").write_text("{}")
    log.unlink()
    # a shard job run again also takes over what the other shards finished (never its own export twice)
    done = converged(tmp_path, "baby", "baselines", PY=stub, MODELS="LightGCN", SHARD="1/2")
    assert done.returncode == 0, done.stderr
    search, = [c for c in log.read_text().splitlines() if c.startswith("run_hyper.py")]
    assert f"--shard 1/2 --output_file {tuning}/LightGCN-baby-shard1of2 --resume " \
           f"--reuse {tuning}/LightGCN-baby-shard2of2.json --data_path" in search
    log.unlink()
    done = converged(tmp_path, "baby", "baselines", PY=stub, MODELS="LightGCN", SEEDS="123 7")
    assert done.returncode == 0, done.stderr
    search, *seeds = [c for c in log.read_text().splitlines() if not c.startswith("-m recbole_micro.data")]
    assert f"--output_file {tuning}/LightGCN-baby --resume --reuse {tuning}/LightGCN-baby-shard1of2.json," \
           f"{tuning}/LightGCN-baby-shard2of2.json" in search and "--shard" not in search
    assert [s.split("--seeds ")[1].split()[0] for s in seeds] == ["123", "7"]
    assert all(f"--tuned {tuning}/LightGCN-baby.json" in s for s in seeds)


def test_bad_shard_is_one_line_before_anything_runs(tmp_path):
    stub, log = recording_python(tmp_path)
    for shard in ("1/x", "3/2", "0/2"):
        done = converged(tmp_path, "baby", "baselines", PY=stub, SHARD=shard)
        assert done.returncode == 2 and done.stderr.strip().splitlines() == [
            f"error: SHARD is '{shard}'; use K/N with 1 <= K <= N (job K of N splitting each search, e.g. 1/2)"]
    done = converged(tmp_path, "baby", "multimodal", PY=stub, SHARD="1/2")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "error: SHARD splits the searches of the baselines, mmbaselines and untrained jobs on this dataset "
        "(JOB=multimodal, TUNED_ON=baby)"]
    assert not log.exists() and not (tmp_path / "runs").exists()
