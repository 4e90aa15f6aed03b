"""End-to-end GPU check (issue 21), run by ``benchmarks/gpu_check.sh``: every path a GPU user takes, each
as its own process through the project's commands, with a time limit; exits 1 when any step fails.

1. ``default``: the README's default run (MICRO on the embedded ml-100k-mm; ``--smoke``: the generated data),
   2 epochs, through its test;
2. ``recommend-cpu`` / ``resume-cpu``: that GPU checkpoint recommends and resumes (one more epoch, test
   included) in a process with CUDA hidden (``CUDA_VISIBLE_DEVICES=``); the CPU's top-k items must equal
   the GPU's;
3. ``compare``: ``run_compare.py`` with BPR, LightGCN, LATTICE and MICRO, 2 epochs each, through the final
   test: every run ``ok`` with test values and its per-user file;
4. ``tune``: ``run_hyper.py``, a 2-trial LightGCN grid with trial checkpoints: both trials ``ok``;
5. ``deterministic``: two runs with ``deterministic: True`` give bit-equal test metrics and weights.

    python benchmarks/gpu_check_e2e.py --data_path <folder holding baby/> [--dataset baby] [--work DIR]
    python benchmarks/gpu_check_e2e.py --smoke        # the same steps on the CPU with generated data (a dry run)
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
STEPS = []


def step(name, limit):
    def register(body):
        STEPS.append((name, limit, body))
        return body

    return register


def run(args, log, limit, hide_cuda=False):
    """One project command; its output goes to ``log``; raises on a non-zero exit or the time limit."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    if hide_cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(args)}\n")
        out.flush()
        done = subprocess.run([PY, *args], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=limit)
    if done.returncode:
        raise RuntimeError(f"exit {done.returncode}: {' '.join(args)} (log {log})")
    with open(log, encoding="utf-8") as f:
        return f.read()


def checkpoints(folder):
    found = [p for p in glob.glob(os.path.join(folder, "*.pth")) if not p.endswith("-last.pth")]
    if len(found) != 1:
        raise RuntimeError(f"expected one best checkpoint in {folder}, found {found}")
    return found[0]


def recommended_items(output):
    rows = [line.split("\t") for line in output.splitlines() if line.count("\t") == 3 and not line.startswith("user")]
    return [(user, rank, item) for user, rank, item, _ in rows]


@step("default", 120)
def default_run(ctx, limit):
    ctx["default_dir"] = os.path.join(ctx["work"], "saved-default")
    run(["run_recbole_micro.py", "--epochs=2", "--eval_step=1", f"--checkpoint_dir={ctx['default_dir']}",
         *ctx["default_args"]], ctx["log"]("default"), limit)
    ctx["default_checkpoint"] = checkpoints(ctx["default_dir"])
    return os.path.basename(ctx["default_checkpoint"])


@step("recommend-cpu", 90)
def recommend_on_cpu(ctx, limit):
    args = ["run_recbole_micro.py", "recommend", "--checkpoint", ctx["default_checkpoint"], "--users", "1,2,3",
            "--topk", "5"]
    on_gpu = recommended_items(run(args, ctx["log"]("recommend-gpu"), limit))
    on_cpu = recommended_items(run(args, ctx["log"]("recommend-cpu"), limit, hide_cuda=True))
    if len(on_cpu) != 15 or on_cpu != on_gpu:
        raise RuntimeError(f"CPU top-5 {on_cpu} differs from the GPU's {on_gpu}")
    return "15 rows, equal to the GPU's"


@step("resume-cpu", 120)
def resume_on_cpu(ctx, limit):
    last = ctx["default_checkpoint"][: -len(".pth")] + "-last.pth"
    out = run(["run_recbole_micro.py", "--resume", last, "--epochs=3", "--eval_step=1",
               f"--checkpoint_dir={ctx['default_dir']}", *ctx["default_args"]], ctx["log"]("resume-cpu"), limit,
              hide_cuda=True)
    if "Resume training from epoch 1" not in out or "test result" not in out:
        raise RuntimeError("the run did not resume at epoch 1 or printed no test result")
    return "resumed and tested with CUDA hidden"


@step("compare", 240)
def comparison(ctx, limit):
    out = os.path.join(ctx["work"], "results")
    models = ["BPR", "LightGCN", "LATTICE", "MICRO"]
    run(["run_compare.py", "--dataset", ctx["dataset"], "--models", ",".join(models), "--epochs", "2",
         "--out", out, f"--data_path={ctx['data_path']}", f"--checkpoint_dir={ctx['work']}/saved-compare",
         "--eval_step=1", *ctx["device_args"]], ctx["log"]("compare"), limit)
    with open(os.path.join(out, f"{ctx['dataset']}.json"), encoding="utf-8") as f:
        doc = json.load(f)
    summary = []
    for model in models:
        runs = list(doc["runs"].get(model, {}).values())
        if not runs or any(r.get("status") != "ok" or not r.get("test") for r in runs):
            raise RuntimeError(f"{model}: no finished run with test values in the comparison")
        files = glob.glob(os.path.join(out, f"{ctx['dataset']}-per-user", f"{model}-seed*.npz"))
        if len(files) != len(runs):
            raise RuntimeError(f"{model}: {len(files)} per-user files for {len(runs)} runs")
        summary.append(f"{model} R@20 {runs[0]['test'].get('recall@20', float('nan')):.4f}")
    return ", ".join(summary)


@step("tune", 150)
def tuning(ctx, limit):
    grid = os.path.join(ctx["work"], "lr.hyper")
    with open(grid, "w", encoding="utf-8") as f:
        f.write("learning_rate choice [0.001, 0.005]\n")
    stem = os.path.join(ctx["work"], "tune", "LightGCN")
    run(["run_hyper.py", "--model", "LightGCN", "--dataset", ctx["dataset"], "--params_file", grid,
         "--output_file", stem, "--epochs=2", "--eval_step=1", f"--data_path={ctx['data_path']}",
         f"--checkpoint_dir={ctx['work']}/saved-tune", *ctx["device_args"]], ctx["log"]("tune"), limit)
    with open(stem + ".json", encoding="utf-8") as f:
        trials = json.load(f)["trials"]
    if len(trials) != 2 or any(t.get("status") != "ok" for t in trials):
        raise RuntimeError(f"tuning trials: {[t.get('status') for t in trials]}")
    return "2 trials ok"


@step("deterministic", 150)
def deterministic(ctx, limit):
    import torch

    records = []
    for run_number in (1, 2):
        folder = os.path.join(ctx["work"], f"saved-det{run_number}")
        run(["run_recbole_micro.py", "--epochs=2", "--eval_step=1", "--deterministic=True",
             f"--checkpoint_dir={folder}", *ctx["default_args"]], ctx["log"]("deterministic"), limit)
        best = checkpoints(folder)
        with open(best[: -len(".pth")] + ".json", encoding="utf-8") as f:
            result = json.load(f)["result"]["test_result"]
        records.append((result, torch.load(best, map_location="cpu", weights_only=True)["state_dict"]))
    (first, weights), (second, again) = records
    if first != second or any(not torch.equal(weights[k], again[k]) for k in weights):
        raise RuntimeError(f"deterministic reruns differ: {first} vs {second}")
    return "test metrics and weights bit-equal"


def smoke_data(work):
    """Generated data for a CPU dry run of every step."""
    sys.path.insert(0, REPO)
    from recbole_micro.data.synthetic import make_synthetic_dataset

    root = os.path.join(work, "atomic_data")
    make_synthetic_dataset(root, "syn", n_users=60, n_items=80, n_clusters=5, per_user=(6, 10),
                           dims={"image": 12, "text": 6})
    return root, "syn"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", help="folder holding <dataset>/ (Baby converted)")
    parser.add_argument("--dataset", default="baby")
    parser.add_argument("--work", default=None, help="folder for logs and outputs (default: a new temporary one)")
    parser.add_argument("--smoke", action="store_true", help="CPU dry run on generated data")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="gpu-check-")
    os.makedirs(work, exist_ok=True)
    if args.smoke:
        data_path, dataset = smoke_data(work)
        device_args = ["--gpu_id="]
        default_args = [f"--dataset={dataset}", f"--data_path={data_path}", *device_args]
    else:
        import torch

        if not torch.cuda.is_available():
            sys.exit("error: no CUDA device is visible; use --smoke for a CPU dry run")
        data_path, dataset, device_args, default_args = args.data_path, args.dataset, [], []
    ctx = {"work": work, "data_path": os.path.abspath(data_path), "dataset": dataset, "device_args": device_args,
           "default_args": default_args,
           "log": lambda name: os.path.join(work, f"{name}.log")}
    failed, rows = 0, []
    for name, limit, body in STEPS:
        start = time.perf_counter()
        try:
            note, status = body(ctx, limit), "ok"
        except Exception as exc:  # noqa: BLE001 - every failure is reported and counted
            note, status = f"{type(exc).__name__}: {exc}", "FAILED"
            failed += 1
        rows.append((name, status, time.perf_counter() - start, note))
        print(f"{name:14s} {status:6s} {rows[-1][2]:6.1f} s  {note}", flush=True)
    print(f"\n{len(STEPS) - failed} of {len(STEPS)} steps ok; logs in {work}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
