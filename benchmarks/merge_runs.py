r"""Fold converged runs made on another machine (a lent GPU: ``benchmarks/gpu_converged.sh``) into this
machine's ``$WORK`` (``../runs``), where ``benchmarks/converged.sh`` keeps its comparisons and searches.

    .venv/bin/python benchmarks/merge_runs.py FROM [--work ../runs]

``FROM`` is a folder (or the ``.tar.gz`` ``gpu_converged.sh`` packs) holding ``compare/<dataset>.json`` with
their per-user sidecars and ``tuning/<Model>-<dataset>.json|.txt``, as ``$WORK`` does.

* Comparison runs: each finished (``ok``) run of ``FROM`` whose (row, seed) has no finished run here is
  added with its per-user sidecar, under the lock ``run_compare.py``'s jobs take, so jobs running here
  keep their own updates. A run both hold finished stays as it is here.
* Searches: ``FROM``'s export replaces this one when it holds more finished trials, unless this one has a
  trial running (a search here is under way: its trials are kept; merge again after it).

Both files are read as data (``load_results`` / ``load_export`` checks: plain names, sidecars inside the
folder); a tarball's members must be plain files under ``compare/`` or ``tuning/``. One line per change.
"""

import argparse
import os
import shutil
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from recbole_micro.errors import RecboleMicroError  # noqa: E402
from recbole_micro.tools.export import load_export  # noqa: E402
from recbole_micro.tools.files import locked  # noqa: E402
from recbole_micro.tools.results import (  # noqa: E402
    get_run, json_path, load_results, new_doc, put_run, row_name, save_results,
)

FOLDERS = ("compare", "tuning")


def unpack(tarball, into):
    r"""Extract only plain files under ``compare/`` and ``tuning/`` (no links, no absolute or ``..`` paths)."""
    with tarfile.open(tarball, "r:gz") as archive:
        members = []
        for member in archive.getmembers():
            parts = os.path.normpath(member.name).split(os.sep)
            if member.isdir():
                continue
            if not member.isfile() or os.path.isabs(member.name) or ".." in parts or parts[0] not in FOLDERS:
                raise RecboleMicroError(f"{tarball}: member '{member.name}' is not a plain file under compare/ or "
                                        f"tuning/; pass the archive gpu_converged.sh wrote")
            members.append(member)
        archive.extractall(into, members=members, filter="data")


def json_files(source, name):
    r"""``(folder, its .json file names)`` of ``source/name`` (none when the folder is absent)."""
    folder = os.path.join(source, name)
    return folder, sorted(n for n in os.listdir(folder) if n.endswith(".json")) if os.path.isdir(folder) else []


def merge_comparisons(source, work):
    r"""Add ``source``'s finished runs that ``work`` lacks; returns the (dataset, row, seed) added."""
    added = []
    folder, names = json_files(source, "compare")
    for name in names:
        theirs = load_results(os.path.join(folder, name))
        out = os.path.join(work, "compare")
        path = json_path(out, theirs["dataset"])
        with locked(path):
            ours, before = load_results(path) if os.path.isfile(path) else new_doc(theirs["dataset"]), len(added)
            for row in theirs["order"]:
                for seed, run in theirs["runs"].get(row, {}).items():
                    mine = get_run(ours, row, seed)
                    if run.get("status") != "ok" or (mine and mine.get("status") == "ok"):
                        continue
                    sidecar = (run.get("per_user") or {}).get("file")
                    if sidecar:
                        os.makedirs(os.path.dirname(os.path.join(out, sidecar)), exist_ok=True)
                        shutil.copyfile(os.path.join(folder, sidecar), os.path.join(out, sidecar))
                    put_run(ours, run)
                    added.append((theirs["dataset"], row_name(run), run["seed"]))
            if len(added) > before:
                save_results(ours, out)
    return added


def merge_searches(source, work):
    r"""Take ``source``'s exports that hold more finished trials; returns (file, theirs, ours, taken?)."""
    done = []
    folder, names = json_files(source, "tuning")
    for name in names:
        theirs = load_export(os.path.join(folder, name))
        mine_path = os.path.join(work, "tuning", name)
        mine = load_export(mine_path) if os.path.isfile(mine_path) else None
        count = lambda doc: sum(t.get("status") == "ok" for t in doc["trials"]) if doc else 0  # noqa: E731
        take = count(theirs) > count(mine) and not (mine and mine.get("running"))
        if take:
            os.makedirs(os.path.dirname(mine_path), exist_ok=True)
            for suffix in (".json", ".txt"):
                src = os.path.join(folder, name[: -len(".json")] + suffix)
                if os.path.isfile(src):
                    shutil.copyfile(src, mine_path[: -len(".json")] + suffix)
        done.append((name, count(theirs), count(mine), take))
    return done


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="folder or .tar.gz with compare/ and tuning/ (gpu_converged.sh's runs.tar.gz)")
    parser.add_argument("--work", default=os.environ.get("WORK", "../runs"), help="this machine's $WORK (../runs)")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            source = args.source
            if os.path.isfile(source):
                unpack(source, scratch)
                source = scratch
            elif not os.path.isdir(source):
                raise RecboleMicroError(f"{source} does not exist; pass the folder or runs.tar.gz to merge")
            for dataset, row, seed in merge_comparisons(source, args.work):
                print(f"[merge] {dataset}: {row} seed {seed} added")
            for name, theirs, ours, take in merge_searches(source, args.work):
                verdict = "taken" if take else "kept ours"
                print(f"[merge] tuning/{name}: {theirs} finished trials there, {ours} here: {verdict}")
    except (RecboleMicroError, OSError, tarfile.TarError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
