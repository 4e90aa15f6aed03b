"""Shared helpers of the benchmarks: machine description, sgemm rate, peak RSS, timed training steps,
RESULTS.md sections."""

import os
import platform
import re
import resource
import time

import torch

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
HEADER = "# Benchmark results\n\nWritten by the scripts in `benchmarks/` (each rewrites its own section).\n"


def machine():
    """One line: cores, CPU model, torch version and threads."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            found = re.search(r"model name\s*:\s*(.+)", f.read())
            model = found.group(1).strip() if found else model
    except OSError:
        pass
    return (f"{os.cpu_count()} cores (nproc), {model}, {platform.machine()}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.1f} at the start")


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
