"""Command line: raw item text or images → a feature atom ready for ``modalities: [...]``.

    python -m recbole_micro.features text ITEMS --name NAME --modality MODALITY --fields F1,F2,... --model MODEL
           [--out atomic_data] [--join ' '] [--batch-size 64] [--device cuda] [--overwrite] [--no-progress]
    python -m recbole_micro.features image SRC --name NAME --model ARCH [--weights FILE] [--modality image]
           [--size 224] [--out atomic_data] [--batch-size 32] [--device cuda] [--overwrite] [--no-progress]

Writes ``OUT/NAME/NAME.MODALITY`` and prints one summary line. Bad input: one ``error:`` line on stderr,
exit status 2. Ctrl-C (130) / SIGTERM (143): one line; the finished batches are kept and the same command
resumes after them; no atom is half-written.
"""

import sys

from recbole_micro.cli_support import OneLineParser, run_interruptible
from recbole_micro.errors import RecboleMicroError
from recbole_micro.features.store import build_atom, check_target, choose_device, digest

PROG = "python -m recbole_micro.features"
KEPT = "finished batches are kept: run the same command again to resume; no atom was half-written"


def _parser():
    parser = OneLineParser(prog=PROG, description="Encode item text or images into a RecBole feature atom.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{text,image}", parser_class=OneLineParser)

    def common(p, modality, batch):
        p.add_argument("--name", required=True, help="dataset name: the atom is OUT/NAME/NAME.MODALITY")
        p.add_argument("--modality", default=modality, help=f"modality name, the atom's suffix (default {modality})")
        p.add_argument("--out", default="atomic_data", help="folder of the datasets (default atomic_data)")
        p.add_argument("--batch-size", type=int, default=batch, help=f"items per batch (default {batch})")
        p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the GPU when there is one)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing atom")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("text", help="CSV/TSV with an item_id column → sentence-transformers embeddings")
    p.add_argument("items", metavar="ITEMS", help="CSV or TSV table with a header, an item_id column and the fields")
    p.add_argument("--fields", required=True, help="comma-separated text columns, joined in this order")
    p.add_argument("--join", default=" ", help="separator placed between the fields (default: a space)")
    p.add_argument("--model", required=True, help="sentence-transformers model name or folder, e.g. all-MiniLM-L6-v2")
    common(p, "text", 64)
    p = sub.add_parser("image", help="folder (or list file) of images named by item id → pooled CNN features")
    p.add_argument("src", metavar="SRC", help="folder of images <item_id>.<ext>, or a file with one path per line")
    p.add_argument("--model", required=True, help="architecture: torchvision or timm name (or a registered one)")
    p.add_argument("--weights", default=None, help="local state-dict file (read weights-only); default: the "
                                                   "library's pretrained weights")
    p.add_argument("--size", type=int, default=224, help="input resolution in pixels (default 224)")
    common(p, "image", 32)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    return run_interruptible(_run_reporting, args, PROG, KEPT)


def _run_reporting(args):
    """``_run`` with bad input and write failures as one line (exit 2)."""
    try:
        return _run(args)
    except RecboleMicroError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a full disk or a read-only --out while writing
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}; free space or choose another --out",
              file=sys.stderr)
        return 2


def _run(args):
    check_target(args.out, args.name, args.modality, args.overwrite)  # before any input is read or model loaded
    device = choose_device(args.device)
    if args.command == "text":
        from recbole_micro.features.text import SentenceEncoder, read_item_texts

        tokens, texts = read_item_texts(args.items, args.fields.split(","), args.join)
        encoder = SentenceEncoder(args.model, device)
        report = build_atom(args.out, args.name, args.modality, tokens, texts, encoder, digest(tokens, texts),
                            args.batch_size, args.overwrite, progress=True if args.no_progress else None)
        why = "empty text"
    else:
        import os

        from recbole_micro.features.image import ImageEncoder, list_images

        tokens, paths, missing = list_images(args.src)
        stamps = [[os.path.abspath(p)] + ([os.stat(p).st_size, os.stat(p).st_mtime_ns] if os.path.isfile(p) else [])
                  for p in paths]
        encoder = ImageEncoder(args.model, device, args.weights, args.size)
        report = build_atom(args.out, args.name, args.modality, tokens, paths, encoder, digest(tokens, stamps),
                            args.batch_size, args.overwrite, progress=True if args.no_progress else None)
        why = f"{len(missing)} missing, {report.skipped - len(missing)} unreadable images"
    skipped = (f"; {report.skipped} items without a row ({why}): the dataset's missing_feature rule applies"
               if report.skipped else "")
    resumed = f", resumed after {report.resumed} of {report.batches} batches" if report.resumed else ""
    speed = f", {report.items_per_s:.1f} items/s" if report.encoded_items else ""
    print(f"wrote {report.path}: {report.rows} items x {report.dims} dims on {device}{resumed}{speed}{skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
