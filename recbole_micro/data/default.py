"""The embedded default dataset ``ml-100k-mm``: MovieLens-100k with two content modalities.

Built from the MovieLens-100k atomic files that RecBole's wheel ships
(``recbole/dataset_example/ml-100k``), with numpy only, deterministically, in about a second. It lets
the plugin run end to end with no download. It is a *smoke-test* dataset: the two modalities are
derived from the item metadata, not from images or reviews, so results are not comparable with any
published multimodal benchmark.

Interactions
    Every rating is an implicit interaction (the rating value and timestamp are dropped; duplicate
    (user, item) pairs, if any, count once). Each user's interactions are split with LATTICE's rule:
    users with fewer than 10 interactions hold out 2, the others ``floor(0.2 * n)``; of the ``k``
    held-out items the first ``floor(k / 2)`` drawn go to test, the rest to valid. The draw is
    ``numpy.random.default_rng(seed)`` (seed 2022 by default) taking ``rng.choice(n, k, replace=False)``
    per user, users in ascending (numeric) id order, each user's items sorted ascending first.
    MovieLens-100k users all have at least 20 ratings, so every user lands in all three splits.

Item tokens are MovieLens' own ids (``"1"`` … ``"1682"``); the feature atoms hold one row per item that
appears in the ``.item`` file or in the interactions, in ascending id order.

Modality ``text`` (64 dims)
    A bag of words per movie: the title's words (lower-cased; every run of characters that are not
    letters or digits is a separator, so ``"Misérables, Les"`` gives ``misérables``, ``les``), plus one
    token ``genre:<name>`` per genre. Weighting is TF-IDF with ``tf = 1 + log(count)`` and smooth
    ``idf = log((1 + N) / (1 + df)) + 1``, rows L2-normalised. The matrix (1,682 × ~2,900) is reduced
    to 64 dims by a truncated SVD (computed as the top eigenvectors of the items' Gram matrix
    ``X Xᵀ``; the item coordinates are ``U_k * S_k``), each
    component's sign fixed so that its largest-magnitude item coordinate is positive, and rows are
    L2-normalised. The genre tokens are shared by many items and dominate the leading components; the
    title words add lexical overlap (sequels, "Star Trek", "Die Hard", …).

Modality ``meta`` (28 dims for the shipped file)
    Two blocks, each L2-normalised on its own and then concatenated (and the row renormalised), so the
    genres and the release decade weigh the same whatever the number of genres:

    * genre multi-hot over the genre vocabulary found in the file (19 genres, incl. MovieLens' own
      ``unknown`` genre), sorted alphabetically;
    * release decade one-hot over the decades found (1920s … 1990s, 8 slots) plus one ``unknown``
      slot.

Missing metadata
    A movie without a title (empty, or MovieLens' placeholder ``unknown``/``unkonwn``) gets the text
    token ``title:unknown``; one without genres gets the genre ``unknown`` (in both modalities); one
    whose release year is not a 4-digit year takes it from a ``(YYYY)`` in its title (item 1412, whose
    year field reads ``V``), and one without either gets the ``unknown`` decade slot (item 267). An item that occurs in the
    interactions but not in the ``.item`` file gets all three. Every item therefore has at least one
    genre and one decade entry, so no row is all-zero.
"""

import os
import re

import numpy as np

from recbole_micro.data.convert import SPLITS, ConversionError, write_dataset

__all__ = ["DEFAULT_DATASET", "DEFAULT_SEED", "TEXT_DIM", "build_default_dataset", "lattice_split",
           "movielens_dir", "text_features", "meta_features"]

DEFAULT_DATASET = "ml-100k-mm"
DEFAULT_SEED = 2022
TEXT_DIM = 64
MODALITIES = ("text", "meta")

_UNKNOWN_TITLES = {"", "unknown", "unkonwn"}
_WORD_SPLIT = re.compile(r"[\W_]+", re.UNICODE)
_TITLE_YEAR = re.compile(r"\((\d{4})\)")


def movielens_dir():
    """Folder of the MovieLens-100k atomic files inside the installed RecBole wheel."""
    import recbole

    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")


# ------------------------------------------------------------------------------------------ reading
def _read_atomic(path, needed):
    """Read a RecBole atomic file into ``{field name: list of str}`` for the ``needed`` fields."""
    if not os.path.isfile(path):
        raise ConversionError(
            f"{path}: not found; the default dataset is built from the MovieLens-100k files of RecBole's "
            f"wheel: reinstall recbole (pip install --force-reinstall recbole==1.2.1)"
        )
    with open(path, encoding="utf-8") as f:
        header = [h.split(":")[0] for h in f.readline().rstrip("\r\n").split("\t")]
        missing = [n for n in needed if n not in header]
        if missing:
            raise ConversionError(f"{path}: header {header} lacks field(s) {missing}; the file is not RecBole's ml-100k")
        cols = [header.index(n) for n in needed]
        rows = [line.rstrip("\r\n").split("\t") for line in f if line.strip()]
    bad = next((k for k, r in enumerate(rows) if len(r) != len(header)), None)
    if bad is not None:
        raise ConversionError(f"{path}: line {bad + 2} has {len(rows[bad])} fields, the header {len(header)}")
    return {n: [r[c] for r in rows] for n, c in zip(needed, cols)}


def _numeric_key(token):
    return (0, int(token), token) if token.isdigit() else (1, 0, token)


# ------------------------------------------------------------------------------------------ split
def lattice_split(user_items, seed=DEFAULT_SEED):
    """Split ``{user: iterable of items}`` per user with LATTICE's rule.

    Returns ``{split: [(user, item), ...]}`` for train/valid/test, users in ``_numeric_key`` order and
    items ascending within each user and split.
    """
    rng = np.random.default_rng(seed)
    out = {s: [] for s in SPLITS}
    for user in sorted(user_items, key=_numeric_key):
        items = sorted(set(user_items[user]), key=_numeric_key)
        n = len(items)
        k = 2 if n < 10 else int(np.floor(0.2 * n))
        k = min(k, n)
        drawn = rng.choice(n, k, replace=False)
        test = set(drawn[: k // 2].tolist())
        valid = set(drawn[k // 2:].tolist())
        for pos, item in enumerate(items):
            split = "test" if pos in test else "valid" if pos in valid else "train"
            out[split].append((user, item))
    return out


# ------------------------------------------------------------------------------------------ features
def _l2_rows(matrix):
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if (norms == 0).any():
        raise AssertionError("an all-zero feature row was produced; the unknown-token rule should prevent it")
    return matrix / norms


def _title_words(title):
    if title.strip().lower() in _UNKNOWN_TITLES:
        return ["title:unknown"]
    words = [w for w in _WORD_SPLIT.split(title.lower()) if w]
    return words or ["title:unknown"]


def _genres(field):
    genres = [g for g in field.split() if g]
    return genres or ["unknown"]


def text_features(titles, genre_fields, dim=TEXT_DIM):
    """TF-IDF of title words + genre tokens, truncated SVD to ``dim`` dims, rows unit-norm (float32)."""
    docs = [_title_words(t) + [f"genre:{g.lower()}" for g in _genres(c)] for t, c in zip(titles, genre_fields)]
    vocab = {w: j for j, w in enumerate(sorted({w for d in docs for w in d}))}
    counts = np.zeros((len(docs), len(vocab)), dtype=np.float64)
    for i, doc in enumerate(docs):
        for w in doc:
            counts[i, vocab[w]] += 1
    present = counts > 0
    tf = np.where(present, 1.0 + np.log(np.maximum(counts, 1.0)), 0.0)
    df = present.sum(axis=0)
    idf = np.log((1.0 + len(docs)) / (1.0 + df)) + 1.0
    tfidf = _l2_rows(tf * idf)
    # Truncated SVD through the items' Gram matrix (n x n, n = 1,682 < vocabulary): its eigenvectors are
    # the left singular vectors, its eigenvalues the squared singular values. ~10x faster than a full SVD.
    # Words of a single item only add to the Gram diagonal, so the product runs over the shared ones.
    shared = df > 1
    gram = tfidf[:, shared] @ tfidf[:, shared].T
    gram[np.diag_indices_from(gram)] += (tfidf[:, ~shared] ** 2).sum(axis=1)
    eigval, eigvec = np.linalg.eigh(gram)
    order = np.argsort(eigval)[::-1][: min(dim, len(docs))]
    coords = eigvec[:, order] * np.sqrt(np.clip(eigval[order], 0.0, None))
    k = coords.shape[1]
    signs = np.sign(coords[np.argmax(np.abs(coords), axis=0), np.arange(k)])
    coords = coords * np.where(signs == 0, 1.0, signs)
    return _l2_rows(coords).astype(np.float32)


def _decade(year, title=""):
    """Release decade, e.g. ``"1990s"``; the year may also come from a ``(YYYY)`` in the title; else None."""
    year = year.strip()
    if not (year.isdigit() and len(year) == 4):
        found = _TITLE_YEAR.findall(title)
        year = found[-1] if found else ""
    return f"{int(year) // 10 * 10}s" if year else None


def meta_features(years, genre_fields, titles=None):
    """Genre multi-hot ‖ release-decade one-hot (+ unknown slot), block-normalised (float32).

    Returns ``(matrix, column names)``.
    """
    genre_lists = [_genres(c) for c in genre_fields]
    genre_vocab = sorted({g for gs in genre_lists for g in gs})
    decades = [_decade(y, t) for y, t in zip(years, titles or [""] * len(years))]
    decade_vocab = sorted({d for d in decades if d is not None}) + ["unknown"]
    genre_block = np.zeros((len(years), len(genre_vocab)))
    decade_block = np.zeros((len(years), len(decade_vocab)))
    g_index = {g: j for j, g in enumerate(genre_vocab)}
    d_index = {d: j for j, d in enumerate(decade_vocab)}
    for i, (gs, d) in enumerate(zip(genre_lists, decades)):
        genre_block[i, [g_index[g] for g in gs]] = 1.0
        decade_block[i, d_index[d if d is not None else "unknown"]] = 1.0
    matrix = np.hstack([_l2_rows(genre_block), _l2_rows(decade_block)])
    names = [f"genre:{g}" for g in genre_vocab] + [f"decade:{d}" for d in decade_vocab]
    return _l2_rows(matrix).astype(np.float32), names


# ------------------------------------------------------------------------------------------ build
def build_default_dataset(out="atomic_data", overwrite=False, seed=DEFAULT_SEED):
    """Write ``<out>/ml-100k-mm`` (atoms as in :mod:`recbole_micro.data.convert`) and return its path."""
    src = movielens_dir()
    inter = _read_atomic(os.path.join(src, "ml-100k.inter"), ["user_id", "item_id"])
    meta = _read_atomic(os.path.join(src, "ml-100k.item"), ["item_id", "movie_title", "release_year", "class"])

    user_items = {}
    for user, item in zip(inter["user_id"], inter["item_id"]):
        user_items.setdefault(user, set()).add(item)
    splits = lattice_split(user_items, seed)

    info = {}
    for item, title, year, genres in zip(meta["item_id"], meta["movie_title"], meta["release_year"], meta["class"]):
        info.setdefault(item, (title, year, genres))
    items = sorted(set(info) | {i for its in user_items.values() for i in its}, key=_numeric_key)
    titles, years, genre_fields = zip(*(info.get(i, ("", "", "")) for i in items))
    features = {"text": text_features(titles, genre_fields)}
    features["meta"], meta_names = meta_features(years, genre_fields, titles)

    counts = " / ".join(f"{s} {len(splits[s])}" for s in SPLITS)
    yaml_text = "\n".join([
        "# Generated by recbole_micro.data.default (build_default_dataset) from the MovieLens-100k files of RecBole's",
        f"# wheel (recbole/dataset_example/ml-100k), seed {seed}; re-run `python -m recbole_micro.data default` "
        "instead of editing.",
        f"# {len(user_items)} users, {len(items)} items; {counts} interactions (LATTICE split rule).",
        f"# text: TF-IDF of title words + genres, SVD to {features['text'].shape[1]} dims; "
        f"meta: {len(meta_names)} dims (genre multi-hot | release decade one-hot).",
        f"modalities: [{', '.join(MODALITIES)}]          # feature atoms {DEFAULT_DATASET}.<modality>, "
        "one float_seq row per item",
        "benchmark_filename: [train, valid, test]   # keep the generated split",
        "epochs: 30          # short training budget for the quick first run",
        "eval_step: 5        # evaluate on the valid split every 5 epochs",
    ]) + "\n"
    return write_dataset(out, DEFAULT_DATASET, splits, features, yaml_text, overwrite, feature_tokens=items)
