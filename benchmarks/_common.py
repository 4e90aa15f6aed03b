"""Shared helpers of the benchmarks: machine description, sgemm and exp rates, peak RSS, timed training steps,
the code of an earlier revision ("before" columns, measured in the same run), child processes, RESULTS.md
sections."""

import importlib.util
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "RESULTS.md")
# The code before issue 13 (speed): the "before" column of every table, re-measured in the same run.
BASELINE = "e7b24d8"
HEADER = "# Benchmark results\n\nWritten by the scripts in `benchmarks/` (each rewrites its own section).\n"


def machine(threads=None, load_start=None):
    """One line: cores, CPU model, torch version, threads (``threads``: those the measured processes use) and the
    load average (``load_start``: taken when the measurements began)."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            found = re.search(r"model name\s*:\s*(.+)", f.read())
            model = found.group(1).strip() if found else model
    except OSError:
        pass
    return (f"{os.cpu_count()} cores (nproc), {model}, {platform.machine()}; torch {torch.__version__}, "
            f"{threads or torch.get_num_threads()} threads; load average "
            f"{os.getloadavg()[0] if load_start is None else load_start:.1f} at the start")


def sgemm_gflops(size=2048, repeats=5):
    """The machine's float32 matrix-product rate now: best of ``repeats`` ``size``³ products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def sgemm_rate(size=2048):
    """FLOP/s of one float32 ``size``³ product (call it repeatedly, interleaved with what it is compared to)."""
    a, b = _operands(size)
    start = time.perf_counter()
    a @ b
    return 2 * size**3 / (time.perf_counter() - start)


_OPERANDS = {}


def _operands(size):
    if size not in _OPERANDS:
        _OPERANDS[size] = (torch.randn(size, size), torch.randn(size, size))
        _OPERANDS[size][0] @ _OPERANDS[size][1]
    return _OPERANDS[size]


def exp_rate(elements=1 << 17, repeats=8):
    """exp evaluations per second, every intra-op thread at once, each on its own L2-resident buffer
    (``elements`` floats in and out, 1 MiB per thread): the compute rate of ``exp``, as the contrastive blocks
    use it (one single-threaded worker per thread, ``losses.run_blocks``)."""
    from recbole_micro.model.losses import run_blocks

    threads = torch.get_num_threads()
    buffers = [(torch.rand(elements) * 8 - 4, torch.empty(elements)) for _ in range(threads)]

    def body(index, slot):
        src, dst = buffers[index]
        for _ in range(repeats):
            torch.exp(src, out=dst)

    run_blocks(list(range(threads)), body, torch.device("cpu"))  # warm-up
    start = time.perf_counter()
    run_blocks(list(range(threads)), body, torch.device("cpu"))
    return threads * elements * repeats / (time.perf_counter() - start)


def median(values):
    return statistics.median(values)


def module_at(rev, path, name):
    """The module file ``path`` as it was at git revision ``rev`` (imported under ``name``)."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    folder = tempfile.mkdtemp(prefix="micro-before-")
    file = os.path.join(folder, f"{name}.py")
    with open(file, "w", encoding="utf-8") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tree_at(rev):
    """A copy of the repository at git revision ``rev`` (``git archive``) in a temporary folder; its package
    finds its own ``properties/``."""
    folder = tempfile.mkdtemp(prefix=f"micro-{rev}-")
    archive = os.path.join(folder, "tree.tar")
    subprocess.run(["git", "archive", "-o", archive, rev], cwd=REPO, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    os.remove(archive)
    link = os.path.join(folder, "recbole_micro", "properties")
    if not os.path.exists(link):
        os.symlink(os.path.join(folder, "properties"), link)
    return folder


def run_child(script, tree, spec, threads=2, timeout=3600):
    """Run ``script --child SPEC`` with the package of ``tree`` first on the path and ``threads`` torch threads;
    returns the JSON object the child prints last."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               RECBOLE_MICRO_TREE=tree, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, script, "--child", json.dumps(spec)], env=env, capture_output=True,
                         text=True, timeout=timeout, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(f"child {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child_setup():
    """In a child: put its tree's package first on the path (see ``run_child``); returns the tree."""
    tree = os.environ["RECBOLE_MICRO_TREE"]
    sys.path.insert(0, tree)
    import recbole_micro

    assert os.path.realpath(recbole_micro.__file__).startswith(os.path.realpath(tree)), recbole_micro.__file__
    sys.argv = sys.argv[:1]  # RecBole's Config parses the command line
    return tree


def load_average():
    return os.getloadavg()[0]


def peak_rss_mb():
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_training_steps(model, trainer, train_data, steps):
    """Time the first ``steps`` training steps (zero_grad, loss, backward, optimizer step) in training mode; the
    epoch is extrapolated as first step + (batches − 1) × mean of the others. Returns seconds and batches as
    ``{"first", "step", "batches", "epoch"}``."""
    model.train()
    times = []
    for index, batch in enumerate(train_data):
        if index == steps:
            break
        start = time.perf_counter()
        trainer.optimizer.zero_grad()
        losses = model.calculate_loss(batch)
        sum(losses).backward() if isinstance(losses, tuple) else losses.backward()
        trainer.optimizer.step()
        times.append(time.perf_counter() - start)
    batches = len(train_data)
    rest = sum(times[1:]) / max(1, len(times) - 1)
    return {"first": times[0], "step": rest, "batches": batches, "epoch": times[0] + (batches - 1) * rest}


def steps_with(owner, name, value, built, steps):
    """Mean seconds of a training step of ``built`` = (model, trainer, train_data), the first step left out, with
    ``owner.name`` set to ``value`` meanwhile (a form of a function or class compared against another)."""
    model, trainer, train_data = built
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        return time_training_steps(model, trainer, train_data, steps)["step"]
    finally:
        setattr(owner, name, saved)


def baby_benchmark(parser, child, prefix, subfolder=None):
    r"""The shared start of the Baby benchmarks: add ``--data``, ``--rounds``, ``--threads``, ``--no-write``
    and the hidden ``--child`` to ``parser`` and parse. In a child process: print ``child(spec)`` as JSON and
    return None. Otherwise: Baby converted into a fresh temporary folder (``<tmp>/<subfolder>`` if given);
    returns ``(args, tmp, data_path)``."""
    import argparse

    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "baby"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return None
    sys.argv = sys.argv[:1]
    from recbole_micro.data import convert_lattice

    tmp = tempfile.mkdtemp(prefix=prefix)
    data_path = os.path.join(tmp, subfolder) if subfolder else tmp
    convert_lattice(os.path.abspath(args.data), "baby", out=data_path)
    return args, tmp, data_path


def write_section(name, text):
    """Replace (or append) the section ``name`` of RESULTS.md."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    body = open(RESULTS, encoding="utf-8").read() if os.path.isfile(RESULTS) else HEADER
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in body and end in body:
        body = body[: body.index(start)] + block + body[body.index(end) + len(end):]
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    with open(RESULTS, "w", encoding="utf-8") as f:
        f.write(body)


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(section, title, lines, write=True):
    """Print ``## title`` followed by ``lines``; unless ``write`` is false, also write it as section ``section``
    of RESULTS.md."""
    text = f"## {title}\n\n" + "\n".join(lines)
    print(text)
    if write:
        write_section(section, text)


def rescore_rules(model_file, rules, apply, metric="recall@20"):
    """``(model, seed, {(rule, split): metric})`` of the checkpoint ``model_file`` on its valid and test splits,
    evaluated once per rule after ``apply(model, rule, config)`` (no gradient; a plugin model's evaluation cache
    cleared and torch's random state reset to the seed before each evaluation, so draws made while scoring are
    the same under every rule)."""
    from recbole_micro.quick_start import load_data_and_model
    from recbole_micro.utils import get_trainer

    config, net, _, _, valid_data, test_data = load_data_and_model(model_file)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    net.eval()
    values = {}
    with torch.no_grad():
        for rule in rules:
            apply(net, rule, config)
            for split, data in (("valid", valid_data), ("test", test_data)):
                getattr(net, "clear_eval_cache", lambda: None)()  # RecBole's own models keep none across rules
                torch.manual_seed(config["seed"])  # LGMRec draws Gumbel noise while scoring: the same draws per rule
                values[rule, split] = trainer.evaluate(data, load_best_model=False)[metric]
    return config["model"], config["seed"], values


def checkpoints_command(doc, help_text, report, argv=None):
    """The command line of a script over saved checkpoints: ``report(paths)``; usage errors and bad files are one
    line (exit status 2)."""
    from recbole_micro.cli_support import OneLineParser, exit_on_bad_input, quiet_library_notices

    parser = OneLineParser(description=doc.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help=help_text)
    args = parser.parse_args(argv)
    quiet_library_notices()
    exit_on_bad_input(report, args.checkpoints)
    return 0
