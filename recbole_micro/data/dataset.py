"""RecBole dataset that gathers multimodal feature atoms into aligned item matrices.

Each modality ``m`` listed in the config key ``modalities`` is an atomic file ``<dataset>.<m>`` beside
the interactions, loaded by RecBole as an additional feature (``additional_feat_suffix``) with an
``item_id:token`` column and one ``float_seq`` column. After RecBole has remapped the item tokens,
``dataset.modality_features[m]`` is a float32 tensor ``(item_num, d_m)`` whose row ``i`` belongs to the
item with internal id ``i``. Row 0 is RecBole's ``[PAD]`` item; it is filled like a missing item and
never enters a graph (see ``recbole_micro.model.graphs.pad_graph``).

Rules (all logged with counts):

* feature rows of items absent from the interactions are dropped before the remap, so every model
  (MICRO or an ID-only baseline) sees the same item set;
* items without a feature row get the mean of the available rows (the reference fills items without
  an image with the mean vector), or an error when ``missing_feature: error``.

Refused with one line naming the file, field and items (``FeatureError``): header mistakes RecBole's
loader would turn into a traceback or a wrong column (``check_atom_header``), values that are not
numbers, rows of different lengths, NaN/Inf, all-zero rows, and rows whose float32 norm is inf or below
``F.normalize``'s eps (the graph code would see them as zero rows, or the loss would become NaN).
Modality names are checked by ``parse_modalities`` when the ``Config`` is made.
"""

import contextlib
import csv
import difflib
import os
import re
from logging import getLogger

import numpy as np
import torch
from recbole.data.dataset import Dataset
from recbole.utils import FeatureType

from recbole_micro.errors import ConfigError, FeatureError
from recbole_micro.progress import heartbeat, progress_every

MISSING_RULES = ("mean", "error")
#: Longest field (characters) of an atomic file row while RecBole reads it (``wide_csv_fields``).
CSV_FIELD_LIMIT = 2 ** 31 - 1
#: ``torch.nn.functional.normalize``'s default eps: rows with a smaller norm are not scaled to unit length.
NORM_EPS = 1e-12
#: Suffixes RecBole itself reads as ``<dataset>.<suffix>`` (or keeps as ``<suffix>_feat``), and the dataset's
#: own yaml: a modality of that name would load the wrong file or clash with RecBole's attribute.
RESERVED_SUFFIXES = ("inter", "user", "item", "kg", "link", "net", "user_id", "item_id", "yaml")
_MODALITY_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def name_list(value):
    """A list of names from a string the way RecBole's command line leaves ``--key=[a,b]`` or ``--key=a``
    (it cannot evaluate them, so they stay strings); ``None``/``""`` give ``[]``, anything else is returned."""
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [part for part in (p.strip().strip("'\"").strip() for p in text.split(",")) if part]


def parse_modalities(value, dataset="<dataset>"):
    """The modality list of config key ``modalities`` from a list, or from a string as RecBole's command
    line leaves it (``--modalities=image``, ``--modalities=[image,text]``: both unevaluable, kept as str).

    Each name is the suffix of an atom ``<dataset>.<name>``: refused (``ConfigError``) when listed twice,
    reserved by RecBole (``item``, ``inter``, ...), or not a plain name (a dot, a slash, a space).
    """
    value = name_list(value)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(
            f"config key 'modalities' is {value!r}; it must be a list of feature atom names, "
            f"e.g. `modalities: [image, text]` (command line: --modalities=[image,text])"
        )
    names = list(value)
    for name in names:
        where = f"config key 'modalities' ({names})"
        if not isinstance(name, str) or not _MODALITY_NAME.match(name):
            dot = isinstance(name, str) and "." in name
            raise ConfigError(
                f"{where}: modality {name!r} is not a plain name"
                + (f" (it contains '.'); a modality is the suffix of the atom {dataset}.<modality>: for "
                   f"{dataset}.{name} write '{name.split('.')[0]}' and name the file after it" if dot else
                   "; use letters, digits, '_' or '-' (the atom file is <dataset>.<modality>)")
            )
        if name.lower() in RESERVED_SUFFIXES:
            raise ConfigError(
                f"{where}: modality '{name}' is a name RecBole reserves for its own atoms "
                f"({', '.join(RESERVED_SUFFIXES)}); rename the feature atom, e.g. {dataset}.{name}_emb, "
                f"and list '{name}_emb'"
            )
        if names.count(name) > 1:
            raise ConfigError(f"{where}: modality '{name}' is listed {names.count(name)} times; list each feature atom once")
    return names


def feature_atom_path(config, modality):
    """Path of the atomic file holding modality ``modality``."""
    return os.path.join(config["data_path"], f"{config['dataset']}.{modality}")


def _atom_format(modality, iid_field):
    return f"`{iid_field}:token<TAB>{modality}_feat:float_seq`"


def check_atom_header(path, config, modality=None):
    """``{column: type}`` of the header of atom ``path``, or a ``FeatureError`` naming the mistake
    RecBole's ``_load_feat`` would turn into a traceback or a silently wrong column: no header, a
    byte-order mark, CRLF line ends, spaces instead of tabs, an unknown or misspelt type; for the feature
    atom of ``modality`` also an item id that is not a token and a vector not declared ``float_seq``."""
    separator = config["field_separator"] or "\t"
    iid_field = config["ITEM_ID_FIELD"]
    expected = _atom_format(modality, iid_field) if modality else "`name:type<TAB>name:type...`"
    with open(path, "rb") as f:
        raw = f.readline()
    if raw.startswith(b"\xef\xbb\xbf"):
        raise FeatureError(f"{path}: the header starts with a UTF-8 byte-order mark (BOM); save the file as "
                           f"UTF-8 without BOM (header {expected})")
    if raw.endswith(b"\r\n"):
        raise FeatureError(f"{path}: the file has Windows line ends (CRLF); save it with LF line ends")
    head = raw.decode(config["encoding"] or "utf-8", errors="replace").rstrip("\n")
    fields = head.split(separator)
    if ":" not in head:
        raise FeatureError(f"{path}: the first line {head[:40]!r} is not a header (no `name:type` column); "
                           f"add the header line {expected}")
    if len(fields) == 1 and " " in head.strip():
        raise FeatureError(f"{path}: the header {head[:60]!r} is separated by spaces; columns of RecBole atoms are "
                           f"separated by field_separator {separator!r} (a tab): write {expected}")
    known = [t.value for t in FeatureType]
    columns = {}
    for field in fields:
        name, _, ftype = field.partition(":")
        if not name or not ftype or ":" in ftype:
            raise FeatureError(f"{path}: header column {field!r} is not `name:type` (types: {', '.join(known)}); "
                               f"write the header as {expected}")
        if ftype not in known:
            close = difflib.get_close_matches(ftype.lower(), known, n=1, cutoff=0.5)
            hint = f"did you mean '{name}:{close[0]}'?" if close else f"use one of {', '.join(known)}"
            raise FeatureError(f"{path}: column '{name}' has type '{ftype}', which RecBole does not know; {hint}")
        columns[name] = ftype
    if modality is None:
        return columns
    if iid_field not in columns:
        raise FeatureError(f"{path}: the header has no '{iid_field}' column ({head[:60]!r}); the header must be "
                           f"{expected}")
    if columns[iid_field] != "token":
        raise FeatureError(f"{path}: column '{iid_field}' is declared '{columns[iid_field]}'; item ids are "
                           f"tokens matched to the interactions: declare it `{iid_field}:token`")
    vectors = [n for n, t in columns.items() if t == "float_seq"]
    if not vectors:
        other = [n for n, t in columns.items() if n != iid_field]
        found = f"column '{other[0]}' is declared '{columns[other[0]]}'" if other else "it has no feature column"
        raise FeatureError(f"{path}: {found}; a feature vector is one `float_seq` column of space-separated numbers: "
                           f"write the header {expected}")
    return columns


def bad_value_error(path, config, columns, exc):
    """A ``FeatureError`` for the first value of a ``float_seq`` column that is not a number (found by
    re-reading the file; only called once RecBole's parse failed)."""
    separator, seq_sep = config["field_separator"] or "\t", config["seq_separator"] or " "
    names = list(columns)
    vector_cols = [k for k, n in enumerate(names) if columns[n] == "float_seq"]
    item_col = names.index(config["ITEM_ID_FIELD"]) if config["ITEM_ID_FIELD"] in names else 0
    with open(path, encoding=config["encoding"] or "utf-8") as f:
        next(f)
        for lineno, line in enumerate(f, start=2):
            fields = line.rstrip("\n").split(separator)
            for k in vector_cols:
                if k >= len(fields):
                    continue
                for value in filter(None, fields[k].split(seq_sep)):
                    try:
                        float(value)
                    except ValueError:
                        where = f"{path}: field '{names[k]}' on line {lineno} (item '{fields[item_col]}')"
                        if "," in value or ";" in value:
                            sep = "," if "," in value else ";"
                            return FeatureError(
                                f"{where} has values separated by {sep!r}; float_seq values are separated by "
                                f"seq_separator {seq_sep!r}: write them space-separated (or set `seq_separator: '{sep}'`)")
                        return FeatureError(f"{where}: value {value[:30]!r} is not a number; fix or drop the row")
    message = " ".join(str(exc).split())
    return FeatureError(f"{path}: RecBole cannot read the file ({message[:200]}); every row must be "
                        f"`item_id<TAB>v1 v2 ...` with the header's {len(names)} tab-separated columns")


@contextlib.contextmanager
def wide_csv_fields():
    """RecBole reads atoms with pandas' python engine, i.e. Python's ``csv`` module, whose fields stop at
    ``csv.field_size_limit()`` = 131,072 characters: a ``float_seq`` row of about 10.7k dimensions. The
    limit is raised (to 2**31 - 1 characters) for the read and restored after it."""
    previous = csv.field_size_limit()
    csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


class MultimodalDataset(Dataset):
    r"""A RecBole ``Dataset`` plus ``modality_features``: ``{modality: FloatTensor(item_num, d)}``."""

    def __init__(self, config):
        self.modalities = list(config["modalities"] or [])
        if not self.modalities:
            raise FeatureError(
                f"dataset '{config['dataset']}': config key 'modalities' is empty; list the feature "
                f"atoms to use, e.g. `modalities: [image, text]` in {config['dataset']}.yaml"
            )
        self.missing_rule = config["missing_feature"] or "mean"
        if self.missing_rule not in MISSING_RULES:
            raise FeatureError(
                f"config key 'missing_feature' is {self.missing_rule!r}; use one of {MISSING_RULES}"
            )
        for modality in self.modalities:
            path = feature_atom_path(config, modality)
            if not os.path.isfile(path):
                raise FeatureError(
                    f"feature atom for modality '{modality}' not found: {path}; write it as "
                    f"`item_id:token<TAB>{modality}_feat:float_seq` or remove '{modality}' from 'modalities'"
                )
        super().__init__(config)

    # ---------------------------------------------------------------- loading
    def _load_feat(self, filepath, source):
        """RecBole's loader, after a header check; a feature atom's unparsable value becomes one line."""
        modality = source if source in self.modalities else None
        load_col, _ = self._get_load_and_unload_col(source)
        if load_col == set():  # RecBole skips this file
            return super()._load_feat(filepath, source)
        columns = check_atom_header(filepath, self.config, modality)
        loaded = {}

        def rows():
            return f"{len(loaded['frame'])} rows" if loaded.get("frame") is not None else ""

        what = f"loading {filepath} ({os.path.getsize(filepath) / 2 ** 20:.1f} MB)"
        try:
            with wide_csv_fields(), heartbeat(what, progress_every(self.config), done=rows):
                loaded["frame"] = super()._load_feat(filepath, source)
            return loaded["frame"]
        except ValueError as exc:
            if modality is None:
                raise
            raise bad_value_error(filepath, self.config, columns, exc) from None

    def _load_data(self, token, dataset_path):
        super()._load_data(token, dataset_path)
        known = self._interaction_item_tokens()
        for modality in self.modalities:
            self._check_feature_frame(modality, known)

    def _interaction_item_tokens(self):
        frames = [self.inter_feat] if self.inter_feat is not None else []
        return set().union(*(set(frame[self.iid_field].values) for frame in frames))

    def _feature_field(self, modality):
        frame = getattr(self, f"{modality}_feat", None)
        path = feature_atom_path(self.config, modality)
        if frame is None or self.iid_field not in frame:
            raise FeatureError(
                f"{path}: no '{self.iid_field}' column was loaded; the header must be "
                f"`{self.iid_field}:token<TAB>{modality}_feat:float_seq` (check load_col)"
            )
        fields = [f for f in frame.columns if self.field2type.get(f) == FeatureType.FLOAT_SEQ]
        if len(fields) != 1:
            raise FeatureError(
                f"{path}: expected exactly one float_seq column, found {fields or 'none'}; "
                f"declare the feature as `{modality}_feat:float_seq`"
            )
        return frame, fields[0], path

    def _check_feature_frame(self, modality, known_items):
        """Validate one feature atom (before the remap) and drop rows of unknown items."""
        frame, field, path = self._feature_field(modality)
        logger = getLogger()
        lengths = np.fromiter((len(v) for v in frame[field].values), dtype=np.int64, count=len(frame))
        if len(frame) == 0:
            raise FeatureError(f"{path}: the feature atom has no rows")
        if lengths.min() != lengths.max():
            bad = int(np.argmax(lengths != np.bincount(lengths).argmax()))
            raise FeatureError(
                f"{path}: field '{field}' has rows of different lengths ({lengths.min()}..{lengths.max()}); "
                f"item '{frame[self.iid_field].iloc[bad]}' has {lengths[bad]} values; every row needs the same dimension"
            )
        values = np.stack(frame[field].values)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise FeatureError(
                f"{path}: field '{field}' has NaN or Inf values in {int(bad.sum())} rows "
                f"(items {frame[self.iid_field].values[bad][:5].tolist()}); fix or drop these rows"
            )
        with np.errstate(over="ignore"):
            matrix = values.astype(np.float32)
        bad = ~np.isfinite(matrix).all(axis=1)
        if bad.any():
            raise FeatureError(
                f"{path}: field '{field}' has values beyond float32's range (|value| > 3.4e38) in {int(bad.sum())} "
                f"rows (items {frame[self.iid_field].values[bad][:5].tolist()}, largest |value| "
                f"{np.abs(values[bad]).max():.3g}); rescale the features (e.g. L2-normalise every row in float64)"
            )
        zero = ~matrix.any(axis=1)
        if zero.any():
            tokens = frame[self.iid_field].values[zero][:5].tolist()
            raise FeatureError(
                f"{path}: field '{field}' has {int(zero.sum())} all-zero rows (items {tokens}); cosine "
                f"similarity is undefined for them: drop the rows (the missing-feature rule then applies)"
            )
        self._check_row_norms(matrix, frame[self.iid_field].values, field, path)
        tokens = frame[self.iid_field].values
        dup = frame[self.iid_field].duplicated(keep=False).values
        if dup.any():
            first = tokens[dup][0]
            rows = matrix[tokens == first]
            if not (rows == rows[0]).all():
                raise FeatureError(
                    f"{path}: item '{first}' has {len(rows)} rows with different features "
                    f"({int(dup.sum())} duplicated rows in all); keep one row per item"
                )
            keep = ~frame[self.iid_field].duplicated(keep="first").values
            logger.warning(f"{path}: dropped {int((~keep).sum())} identical duplicate rows")
            frame, matrix = frame[keep], matrix[keep]
        in_inter = np.fromiter((t in known_items for t in frame[self.iid_field].values), bool, len(frame))
        if not in_inter.any():
            example = sorted(known_items)[:1]
            raise FeatureError(
                f"{path}: none of the {len(frame)} feature rows belongs to an item of the interactions (feature "
                f"item ids e.g. {frame[self.iid_field].values[:3].tolist()}, interaction item ids e.g. {example}); "
                f"write the item ids exactly as in the .inter files (as tokens, not floats such as '12.0')"
            )
        if not in_inter.all():
            logger.warning(
                f"{path}: {int((~in_inter).sum())} feature rows belong to items that are not in the "
                f"interactions; they are ignored"
            )
            frame, matrix = frame[in_inter], matrix[in_inter]
        frame = frame.reset_index(drop=True)
        frame[field] = list(matrix)
        setattr(self, f"{modality}_feat", frame)

    @staticmethod
    def _check_row_norms(matrix, tokens, field, path):
        """Refuse rows whose float32 L2 norm is inf or below ``NORM_EPS``: the graph code normalises rows
        in float32 (``F.normalize`` in ``model/graphs.py``), where such rows become zero vectors (cosine 0
        with every item, like the all-zero rows) or, through the projections, a NaN loss."""
        norms = torch.linalg.vector_norm(torch.from_numpy(matrix), dim=1).numpy()  # as F.normalize computes it
        magnitude = np.abs(matrix).max(axis=1)
        for bad, what in ((~np.isfinite(norms), "overflows to inf"),
                          (norms < NORM_EPS, f"is below {NORM_EPS:g} (the normalisation's eps)")):
            if bad.any():
                raise FeatureError(
                    f"{path}: field '{field}' has {int(bad.sum())} rows whose float32 norm {what} (items "
                    f"{tokens[bad][:5].tolist()}, largest |value| {magnitude[bad].max():.3g}); cosine similarity "
                    f"treats them as zero rows: rescale the features (e.g. L2-normalise every row in float64)"
                )

    # ------------------------------------------------------------- alignment
    def _data_processing(self):
        super()._data_processing()
        self.modality_features = {m: self._aligned_matrix(m) for m in self.modalities}
        # The matrices are all the models need: free the per-row frames before ``build`` copies them.
        for modality in self.modalities:
            setattr(self, f"{modality}_feat", None)
            self.feat_name_list.remove(f"{modality}_feat")

    def _aligned_matrix(self, modality):
        """(item_num × d) float32 tensor; row i = features of internal item id i (after the remap)."""
        frame, field, path = self._feature_field(modality)
        # RecBole remaps tokens only in inter_feat/item_feat: map the feature atom's tokens ourselves
        # (tokens unknown to the interactions were dropped in _check_feature_frame).
        ids = np.asarray(self.token2id(self.iid_field, frame[self.iid_field].values), dtype=np.int64)
        values = np.stack(frame[field].values).astype(np.float32)
        matrix = np.zeros((self.item_num, values.shape[1]), dtype=np.float32)
        present = np.zeros(self.item_num, dtype=bool)
        matrix[ids] = values
        present[ids] = True
        present[0] = True  # [PAD]
        missing = int((~present).sum())
        if missing:
            if self.missing_rule == "error":
                tokens = self.id2token(self.iid_field, np.flatnonzero(~present)[:5]).tolist()
                raise FeatureError(
                    f"{path}: {missing} items of the interactions have no feature row (e.g. {tokens}); "
                    f"add rows for them or set `missing_feature: mean`"
                )
            getLogger().warning(
                f"{path}: {missing} items of the interactions have no '{field}' row; "
                f"they get the mean feature vector (missing_feature: mean)"
            )
        matrix[~present] = values.mean(axis=0)
        matrix[0] = values.mean(axis=0)
        return torch.from_numpy(matrix)

    def __str__(self):
        dims = ", ".join(f"{m}: {tuple(x.shape)}" for m, x in self.modality_features.items())
        return super().__str__() + f"\nModality features: {dims}"
