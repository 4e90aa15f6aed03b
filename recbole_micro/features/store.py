"""Batches → feature atom, resumable and atomic: what the text and the image encoders share.

``build_atom`` encodes a list of items batch by batch (progress bar, tqdm) and writes the feature atom
``<out>/<name>/<name>.<modality>`` with :func:`recbole_micro.data.convert.write_feature_atom` (header
``item_id:token<TAB><modality>_feat:float_seq``, ``%.9g`` float32 rows, the items' order).

Resume
    Every finished batch is saved at once as ``batch-<k>.npz`` (arrays ``vectors`` float32 and ``ok``
    bool, written to a temporary name and renamed) in the folder
    ``<out>/<name>/.<name>.<modality>.partial-<key>``. The key is a hash of the encoder's identity (model
    name or weight-file stamps, options), the input's identity (item ids and texts, or image paths with
    size and mtime) and the batch size, so a run resumes only the very same job and a changed input starts
    afresh. Saved batches are data only: read with ``numpy.load(allow_pickle=False)`` and checked (arrays,
    shapes, dtype, finite vectors); a batch that fails the check is encoded again, with every batch after it.

Atomic output
    The atom is written to a temporary file in the target folder and renamed into place once complete; an
    existing atom is refused unless ``overwrite``. Ctrl-C leaves the previous atom (if any) untouched and
    the finished batches in the partial folder; a successful run removes the partial folders of this atom.

Missing features
    Items the encoder cannot describe (empty text, a missing or corrupt image: ``ok`` false) and vectors
    that are not finite or all zero get no row: the dataset then applies its ``missing_feature`` rule
    (mean vector, or an error with ``missing_feature: error``; see ``recbole_micro.data.dataset``).
"""

import glob
import hashlib
import json
import os
import shutil
import tempfile
import time

import numpy as np
import torch

from recbole_micro.data.convert import check_dataset_name, write_feature_atom
from recbole_micro.data.dataset import parse_modalities
from recbole_micro.errors import RecboleMicroError

__all__ = ["FeatureBuildError", "AtomReport", "build_atom", "check_target", "choose_device", "partial_folder", "job_key", "digest"]


class FeatureBuildError(RecboleMicroError):
    """An input, model or output of the feature builder is unusable; the message names it and the fix."""


class AtomReport(dict):
    """What a run did: ``path``, ``items``, ``rows``, ``dims``, ``skipped``, ``batches``, ``resumed``,
    ``encoded_items``, ``seconds`` (encoding only), ``items_per_s``."""

    __getattr__ = dict.__getitem__


def digest(*parts):
    """Hex SHA-256 of the JSON of ``parts`` (strings, numbers, lists)."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")).hexdigest()


def job_key(encoder_identity, input_identity, batch_size):
    """The resume key: 16 hex digits naming the encoder, the input and the batch size."""
    return digest("recbole_micro.features/1", encoder_identity, input_identity, int(batch_size))[:16]


def partial_folder(out, name, modality, key):
    """Folder holding the finished batches of one job."""
    return os.path.join(out, name, f".{name}.{modality}.partial-{key}")


def choose_device(name=None):
    """``torch.device(name)``, or the GPU when there is one, else the CPU."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("no CUDA device is available")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise RuntimeError(f"only {torch.cuda.device_count()} CUDA devices are available")
    except RuntimeError as exc:
        raise FeatureBuildError(f"--device {name!r} is not usable ({exc}); use cpu, cuda or cuda:N, or leave it "
                                f"out to take the GPU when there is one") from None
    return device


def check_target(out, name, modality, overwrite=False):
    """Path of the atom ``<out>/<name>/<name>.<modality>``; a ``FeatureBuildError`` for a name or modality
    that is not usable, or for an existing atom without ``overwrite``."""
    try:
        check_dataset_name(name)
    except RecboleMicroError as exc:
        raise FeatureBuildError(f"--name: {exc}") from None
    try:
        parse_modalities([modality], name)
    except RecboleMicroError as exc:
        raise FeatureBuildError(f"--modality {modality!r} is not usable: {str(exc).split(': ', 1)[-1]}") from None
    path = os.path.join(os.fspath(out), name, f"{name}.{modality}")
    if os.path.lexists(path) and not overwrite:
        raise FeatureBuildError(f"{path} already exists; remove it or pass --overwrite to replace it")
    return path


def _batch_path(folder, k):
    return os.path.join(folder, f"batch-{k:06d}.npz")


def _load_batch(path, rows, dims):
    """``(vectors, ok)`` of a saved batch, or None when it is absent or not exactly what was saved."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if sorted(data.files) != ["ok", "vectors"]:
                return None
            vectors, ok = data["vectors"], data["ok"]
    except Exception:  # noqa: BLE001 - any unreadable batch is encoded again
        return None
    if ok.dtype != np.bool_ or ok.shape != (rows,) or vectors.dtype != np.float32 or vectors.ndim != 2:
        return None
    if not ok.any():  # a batch without any usable item is saved with no columns
        return (vectors, ok) if vectors.shape == (rows, 0) else None
    if vectors.shape[0] != rows or vectors.shape[1] == 0 or (dims is not None and vectors.shape[1] != dims) \
            or not np.isfinite(vectors[ok]).all():
        return None
    return vectors, ok


def _save_batch(path, vectors, ok):
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, vectors=vectors, ok=ok)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _encode(encoder, payloads):
    vectors, ok = encoder.encode(payloads)
    vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(len(payloads), -1))
    ok = np.asarray(ok, dtype=bool).reshape(len(payloads))
    # rows the dataset would refuse (not finite, all zero) get no row either
    ok = ok & np.isfinite(vectors).all(axis=1) & vectors.any(axis=1)
    if not ok.any():
        return np.zeros((len(payloads), 0), dtype=np.float32), ok
    vectors[~ok] = 0.0
    return vectors, ok


def build_atom(out, name, modality, tokens, payloads, encoder, input_identity, batch_size=64, overwrite=False,
               progress=None):
    """Encode ``payloads`` (one per item token) with ``encoder`` and write the feature atom; returns an
    :class:`AtomReport`.

    ``encoder`` has ``identity`` (a string naming model and options) and ``encode(payloads) -> (vectors,
    ok)``: a float array with one row per payload and a bool mask of the rows it could encode.
    ``progress``: tqdm's ``disable`` (None = a bar on a terminal only, True = none).
    """
    from tqdm.auto import tqdm

    out = os.fspath(out)
    path = check_target(out, name, modality, overwrite)
    if len(tokens) != len(payloads):
        raise ValueError("one payload per token")
    if not tokens:
        raise FeatureBuildError(f"{path}: no item has anything to encode; check the input")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise FeatureBuildError(f"--batch-size {batch_size!r} must be a positive integer")
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise FeatureBuildError(f"output folder {folder} cannot be created ({exc}); choose a writable --out") from None
    partial = partial_folder(out, name, modality, job_key(encoder.identity, input_identity, batch_size))
    os.makedirs(partial, exist_ok=True)

    starts = list(range(0, len(tokens), batch_size))
    parts, dims = [], None
    for k, start in enumerate(starts):  # resume: the longest valid prefix of saved batches
        saved = _load_batch(_batch_path(partial, k), len(payloads[start:start + batch_size]), dims)
        if saved is None:
            break
        parts.append(saved)
        dims = saved[0].shape[1] if saved[1].any() else dims
    resumed = len(parts)
    for k in range(resumed, len(starts)):  # a later batch after an invalid one was made by another run
        stale = _batch_path(partial, k)
        if os.path.exists(stale):
            os.remove(stale)

    seconds = 0.0
    bar = tqdm(total=len(starts), initial=resumed, unit="batch", desc=f"{name}.{modality}", disable=progress)
    try:
        for k in range(resumed, len(starts)):
            batch = payloads[starts[k]:starts[k] + batch_size]
            tick = time.perf_counter()
            vectors, ok = _encode(encoder, batch)
            seconds += time.perf_counter() - tick
            if ok.any():
                if dims is not None and vectors.shape[1] != dims:
                    raise FeatureBuildError(f"the encoder gave {vectors.shape[1]}-d vectors after {dims}-d ones")
                dims = vectors.shape[1]
            _save_batch(_batch_path(partial, k), vectors, ok)
            parts.append((vectors, ok))
            bar.update(1)
    finally:
        bar.close()

    ok = np.concatenate([o for _, o in parts])
    if not ok.any():
        raise FeatureBuildError(f"{path}: none of the {len(tokens)} items could be encoded (all empty or unreadable);"
                                f" check the input")
    vectors = np.concatenate([v if o.any() else np.zeros((len(o), dims), np.float32) for v, o in parts])
    kept = [t for t, good in zip(tokens, ok) if good]
    _write_atomically(path, modality, vectors[ok], kept, overwrite)
    for old in glob.glob(os.path.join(folder, f".{glob.escape(name)}.{glob.escape(modality)}.partial-*")):
        shutil.rmtree(old, ignore_errors=True)
    encoded = sum(min(batch_size, len(tokens) - s) for s in starts[resumed:])
    return AtomReport(path=path, items=len(tokens), rows=int(ok.sum()), dims=int(dims), skipped=int((~ok).sum()),
                      batches=len(starts), resumed=resumed, encoded_items=encoded, seconds=seconds,
                      items_per_s=encoded / seconds if seconds > 0 else float("nan"))


def _write_atomically(path, modality, matrix, tokens, overwrite):
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-{os.getpid()}-", dir=folder)
    os.close(fd)
    try:
        write_feature_atom(tmp, modality, matrix, tokens)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        if os.path.lexists(path) and not overwrite:  # appeared while we were encoding
            raise FeatureBuildError(f"{path} already exists; remove it or pass --overwrite to replace it")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
