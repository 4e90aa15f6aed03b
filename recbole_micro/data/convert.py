"""Converters from the two common multimodal-recommendation layouts into RecBole atomic files.

Output (``<out>/<name>/``), the contract the dataset class reads:

* ``<name>.train.inter``, ``<name>.valid.inter``, ``<name>.test.inter``: header
  ``user_id:token<TAB>item_id:token``, one row per (user, item) interaction of that split. Tokens are the
  source's ids as strings. Rows are sorted by user (numerically when every user id is an integer) and
  then item, so two layouts holding the same split give byte-identical files.
* ``<name>.<modality>`` for ``image`` and ``text``: header ``item_id:token<TAB><modality>_feat:float_seq``,
  one row per row of ``<modality>_feat.npy`` (row ``i`` is item token ``str(i)``), values written with
  ``%.9g`` and separated by single spaces, so a float32 value reads back bit-exactly.
* ``<name>.yaml``: ``modalities`` and ``benchmark_filename: [train, valid, test]`` (keep the source's split).

Features are stored as float32 (the models' precision); a float64 ``.npy`` is cast.

The output is written to a temporary sibling folder and renamed into place only when complete; an
existing ``<out>/<name>`` is refused unless ``overwrite=True``, and even then it is only replaced once
the new folder is complete. On any error (Ctrl-C included) the temporary folder is removed and an
existing dataset is left untouched; SIGINT/SIGTERM arriving during the final renames wait until they are
done. A process killed outright (SIGKILL, power loss) leaves ``.<name>.tmp-<pid>-*``/``.<name>.old-<pid>-*``
folders: the next conversion into the same ``out`` removes those of dead processes, putting a
previous dataset back from ``.old-`` if the kill came between the two renames.

A UTF-8 byte-order mark at the start of a source text file (Excel and Windows editors write one) is ignored.

Every bad input raises :class:`ConversionError` (a ``ValueError``) whose one-line message names the
file, what was found and the fix.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading

import numpy as np

from recbole_micro.errors import RecboleMicroError

__all__ = ["ConversionError", "check_dataset_name", "convert_lattice", "convert_mmrec", "remove_stale_folders",
           "MODALITIES", "SPLITS"]

#: Modalities of both source layouts: ``<modality>_feat.npy`` → atom ``<name>.<modality>``.
MODALITIES = ("image", "text")
#: RecBole split names, in ``benchmark_filename`` order.
SPLITS = ("train", "valid", "test")

LATTICE_FILES = {"train": "train.json", "valid": "val.json", "test": "test.json"}
_MMREC_COLUMNS = ("userID", "itemID", "x_label")


class ConversionError(RecboleMicroError):
    """A source file is missing or malformed, or the output folder cannot be written as asked."""


# ---------------------------------------------------------------------------------------- checks
def check_dataset_name(name):
    """A dataset name is one folder and file-name prefix: no path separators, whitespace, ``.`` or ``..``."""
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\t\n "):
        raise ConversionError(
            f"dataset name {name!r} is not usable as a folder and file name; use a plain name such as 'baby'"
        )



def require_files(src, relpaths, layout):
    if not os.path.isdir(src):
        raise ConversionError(f"source folder {src} does not exist; pass the folder that holds the {layout} files")
    missing = [p for p in relpaths if not os.path.isfile(os.path.join(src, p))]
    if missing:
        raise ConversionError(
            f"{src}: missing {', '.join(missing)} (the {layout} layout needs {', '.join(relpaths)}); "
            f"add the missing files or point SRC at the right folder"
        )


def _token(value, path, what):
    token = str(value).strip()
    if not token or any(c.isspace() for c in token):
        raise ConversionError(f"{path}: {what} {value!r} is empty or contains whitespace; ids must be plain tokens")
    return token


def _item_id(value, path, where):
    """Item ids index feature rows, so they must be non-negative integers."""
    if isinstance(value, bool):
        value = None
    try:
        item = int(value) if not isinstance(value, float) else None
    except (TypeError, ValueError):
        item = None
    if item is None or item < 0 or (isinstance(value, str) and value.strip() != str(item)):
        raise ConversionError(
            f"{path}: item id {value!r} ({where}) is not a non-negative integer; item ids must be 0-based "
            f"integers that index the rows of the feature .npy files"
        )
    return item


def load_features(src, max_item):
    """Load and validate ``<modality>_feat.npy`` for every modality; returns ``{modality: float32 array}``."""
    features = {}
    for modality in MODALITIES:
        path = os.path.join(src, f"{modality}_feat.npy")
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise ConversionError(
                f"{path}: cannot be read as a .npy array ({type(exc).__name__}: {exc}); "
                f"save the features with numpy.save as a float array"
            ) from None
        if array.ndim != 2:
            raise ConversionError(
                f"{path}: expected a 2-D (items x dims) array, found shape {array.shape}; "
                f"save one row per item (row i = item i)"
            )
        if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
            raise ConversionError(f"{path}: dtype {array.dtype} is not a real number type; save float32 features")
        if array.shape[0] < max_item + 1 or array.shape[1] == 0:
            raise ConversionError(
                f"{path}: {array.shape[0]} rows x {array.shape[1]} dims, but the interactions use item ids up to "
                f"{max_item}, so at least {max_item + 1} non-empty rows are needed (rows misaligned with the item "
                f"ids?); row i must hold the features of item i"
            )
        array = np.ascontiguousarray(array, dtype=np.float32)
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            rows = np.flatnonzero(~finite)
            raise ConversionError(
                f"{path}: {rows.size} rows hold NaN or Inf (e.g. rows {rows[:5].tolist()}); "
                f"fix or impute these rows before converting"
            )
        features[modality] = array
    dims = {m: a.shape[0] for m, a in features.items()}
    if len(set(dims.values())) > 1:
        raise ConversionError(
            f"{src}: the feature files have different row counts {dims}; every modality needs one row per item"
        )
    return features


# ---------------------------------------------------------------------------------------- writing
def sort_pairs(pairs):
    """Sort (user token, item int) pairs by user (numerically when possible), then item."""
    users = {u for u, _ in pairs}
    if all(u.lstrip("-").isdigit() for u in users):
        return sorted(pairs, key=lambda p: (int(p[0]), p[0], p[1]))
    return sorted(pairs)


def _write_inter(path, pairs):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("user_id:token\titem_id:token\n")
        f.write("".join(f"{u}\t{i}\n" for u, i in pairs))


def write_feature_atom(path, modality, matrix, tokens=None):
    """Write ``item_id:token<TAB><modality>_feat:float_seq``, one ``%.9g`` row per matrix row.

    ``tokens`` defaults to ``str(i)`` for row ``i``. About 0.6 s for 7,050 × 256.
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    if tokens is None:
        tokens = [str(i) for i in range(matrix.shape[0])]
    row_fmt = " ".join(["%.9g"] * matrix.shape[1])
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"item_id:token\t{modality}_feat:float_seq\n")
        f.write("".join(f"{t}\t{row_fmt % tuple(row)}\n" for t, row in zip(tokens, matrix.tolist())))


def yaml_text(name, header_lines, modalities, extra_lines=()):
    lines = [f"# {line}" for line in header_lines]
    lines.append(
        f"modalities: [{', '.join(modalities)}]          # feature atoms {name}.<modality>, one float_seq row per item"
    )
    lines.append("benchmark_filename: [train, valid, test]   # keep the source's split")
    lines.extend(extra_lines)
    return "\n".join(lines) + "\n"


def write_dataset(out, name, splits, features, yaml_text, overwrite=False, feature_tokens=None):
    """Write one dataset folder atomically and return its path.

    ``splits``: ``{split: [(user token, item token), ...]}`` for every name in :data:`SPLITS`, already in
    output order. ``features``: ``{modality: 2-D float32 array}`` (insertion order kept).
    ``feature_tokens``: item token of each feature row (default ``str(row index)``).
    """
    check_dataset_name(name)
    final = os.path.join(out, name)
    if os.path.lexists(final) and not overwrite:
        raise ConversionError(
            f"{final} already exists; remove it or pass overwrite=True (CLI: --overwrite) to replace it"
        )
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise ConversionError(f"output folder {out} cannot be created ({exc}); choose a writable --out") from None
    remove_stale_folders(out, name)
    if os.path.lexists(final) and not overwrite:  # put back by remove_stale_folders
        raise ConversionError(
            f"{final} already exists; remove it or pass overwrite=True (CLI: --overwrite) to replace it"
        )
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-{os.getpid()}-", dir=out)
    old = None
    try:
        for split in SPLITS:
            _write_inter(os.path.join(tmp, f"{name}.{split}.inter"), splits[split])
        for modality, matrix in features.items():
            write_feature_atom(os.path.join(tmp, f"{name}.{modality}"), modality, matrix, feature_tokens)
        with open(os.path.join(tmp, f"{name}.yaml"), "w", encoding="utf-8", newline="\n") as f:
            f.write(yaml_text)
        os.chmod(tmp, 0o755)  # mkdtemp creates 0700
        with _signals_deferred():
            if os.path.lexists(final):
                if not overwrite:  # appeared while we were writing
                    raise ConversionError(
                        f"{final} already exists; remove it or pass overwrite=True (CLI: --overwrite) to replace it"
                    )
                old = tempfile.mkdtemp(prefix=f".{name}.old-{os.getpid()}-", dir=out)
                os.replace(final, os.path.join(old, name))
                try:
                    os.replace(tmp, final)
                except BaseException:
                    os.replace(os.path.join(old, name), final)  # put the previous dataset back
                    raise
            else:
                os.replace(tmp, final)
    except BaseException:
        with _signals_deferred():
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return final


@contextlib.contextmanager
def _signals_deferred():
    """Hold SIGINT and SIGTERM until the block is done (main thread only; elsewhere a no-op), then act on
    the first one that arrived as its previous handler would have."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if caught:
            handler = previous[caught[0]]
            if callable(handler):
                handler(caught[0], None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), caught[0])


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove_stale_folders(out, name):
    """Remove the ``.<name>.tmp-*``/``.<name>.old-*`` folders in ``out`` left by conversions that were
    killed (their process is gone; folders of an earlier version carry no pid and are removed too). A
    previous dataset left only in ``.old-`` (killed between the two renames) is moved back first.
    Returns the removed folder names."""
    pattern = re.compile(rf"\.{re.escape(name)}\.(tmp|old)-(?:(\d+)-)?[A-Za-z0-9_]{{8}}")
    removed = []
    for entry in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        match = pattern.fullmatch(entry)
        path = os.path.join(out, entry)
        if not match or not os.path.isdir(path) or (match.group(2) and _pid_alive(int(match.group(2)))):
            continue
        final, kept = os.path.join(out, name), os.path.join(path, name)
        if match.group(1) == "old" and os.path.isdir(kept) and not os.path.lexists(final):
            os.replace(kept, final)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(entry)
    return removed


def _summary(splits):
    users = set().union(*({u for u, _ in pairs} for pairs in splits.values()))
    items = set().union(*({i for _, i in pairs} for pairs in splits.values()))
    counts = " / ".join(f"{s} {len(splits[s])}" for s in SPLITS)
    return f"{len(users)} users, {len(items)} items with interactions; {counts} interactions"


def check_splits(splits, path_of):
    for split in SPLITS:
        if not splits[split]:
            raise ConversionError(
                f"{path_of(split)}: the {split} split has no interactions; every split needs at least one"
            )


def _convert(src, name, out, overwrite, layout, splits, path_of):
    check_splits(splits, path_of)
    max_item = max(i for pairs in splits.values() for _, i in pairs)
    features = load_features(src, max_item)
    splits = {s: sort_pairs(pairs) for s, pairs in splits.items()}
    dims = ", ".join(f"{m} {a.shape[0]}x{a.shape[1]}" for m, a in features.items())
    header = [
        f"Generated by recbole_micro.data ({layout} layout) from {os.path.abspath(src)}; re-run the converter "
        f"instead of editing.",
        f"{_summary(splits)}; features: {dims}.",
    ]
    return write_dataset(out, name, splits, features, yaml_text(name, header, features), overwrite)


# ---------------------------------------------------------------------------------------- LATTICE
def read_lattice_split(path):
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a leading byte-order mark is ignored
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(
            f"{path}: not valid JSON ({exc}); expected an object mapping user id -> list of item ids"
        ) from None
    if not isinstance(data, dict):
        raise ConversionError(
            f"{path}: found a JSON {type(data).__name__}, expected an object mapping user id -> list of item ids"
        )
    pairs = []
    for user, items in data.items():
        token = _token(user, path, "user id")
        if not isinstance(items, list):
            raise ConversionError(
                f"{path}: user {user!r} maps to a {type(items).__name__}, expected a list of item ids"
            )
        pairs.extend((token, _item_id(i, path, f"user {user!r}")) for i in items)
    return pairs


def convert_lattice(src, name, out="atomic_data", overwrite=False):
    """Convert a LATTICE/MICRO folder (``5-core/{train,val,test}.json`` + ``{image,text}_feat.npy``).

    Each json maps a user id string to a list of int item ids; ``val.json`` becomes the valid split.
    Returns the output folder ``<out>/<name>``.
    """
    src = os.fspath(src)
    check_dataset_name(name)
    expected = [f"5-core/{f}" for f in LATTICE_FILES.values()] + [f"{m}_feat.npy" for m in MODALITIES]
    require_files(src, expected, "LATTICE/MICRO")
    path_of = lambda split: os.path.join(src, "5-core", LATTICE_FILES[split])  # noqa: E731
    splits = {split: read_lattice_split(path_of(split)) for split in SPLITS}
    return _convert(src, name, os.fspath(out), overwrite, "LATTICE/MICRO", splits, path_of)


# ---------------------------------------------------------------------------------------- MMRec
def find_inter(src):
    if not os.path.isdir(src):
        raise ConversionError(f"source folder {src} does not exist; pass the folder that holds the MMRec files")
    found = sorted(f for f in os.listdir(src) if f.endswith(".inter") and os.path.isfile(os.path.join(src, f)))
    if len(found) > 1:
        raise ConversionError(
            f"{src}: found {len(found)} .inter files ({', '.join(found)}); an MMRec source holds exactly one"
        )
    return found


def read_mmrec_inter(path):
    splits = {s: [] for s in SPLITS}
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: a leading byte-order mark is ignored
            header = [c.strip() for c in f.readline().rstrip("\r\n").split("\t")]
            missing = [c for c in _MMREC_COLUMNS if c not in header]
            if missing:
                raise ConversionError(
                    f"{path}: header {header} lacks column(s) {missing}; an MMRec .inter is tab-separated with "
                    f"header userID<TAB>itemID<TAB>x_label (x_label 0=train, 1=valid, 2=test)"
                )
            cu, ci, cx = (header.index(c) for c in _MMREC_COLUMNS)
            width = len(header)
            names = {"0": "train", "1": "valid", "2": "test"}
            for lineno, line in enumerate(f, start=2):
                line = line.rstrip("\r\n")
                if not line:
                    continue
                fields = line.split("\t")
                if len(fields) != width:
                    raise ConversionError(
                        f"{path}: line {lineno} has {len(fields)} tab-separated fields, the header has {width}; "
                        f"fix the row"
                    )
                split = names.get(fields[cx].strip())
                if split is None:
                    raise ConversionError(
                        f"{path}: line {lineno} has x_label {fields[cx]!r}; x_label must be 0 (train), "
                        f"1 (valid) or 2 (test)"
                    )
                user = _token(fields[cu], path, f"userID on line {lineno}:")
                splits[split].append((user, _item_id(fields[ci], path, f"line {lineno}")))
    except UnicodeDecodeError as exc:
        raise ConversionError(f"{path}: not UTF-8 text ({exc}); save the .inter file as UTF-8") from None
    return splits


def convert_mmrec(src, name, out="atomic_data", overwrite=False):
    """Convert an MMRec folder (one ``*.inter`` with ``userID, itemID, x_label`` + ``{image,text}_feat.npy``).

    ``x_label`` 0/1/2 gives the train/valid/test split. Returns the output folder ``<out>/<name>``.
    """
    src = os.fspath(src)
    check_dataset_name(name)
    found = find_inter(src)
    inter_name = found[0] if found else "*.inter"
    require_files(src, [inter_name] + [f"{m}_feat.npy" for m in MODALITIES], "MMRec")
    path = os.path.join(src, inter_name)
    splits = read_mmrec_inter(path)
    return _convert(src, name, os.fspath(out), overwrite, "MMRec", splits, lambda split: path)
