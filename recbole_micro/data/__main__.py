"""Command line: write RecBole atomic files for MICRO.

    python -m recbole_micro.data lattice SRC --name NAME [--out atomic_data] [--overwrite] [--cold-start 0.2 [--seed 123]]
    python -m recbole_micro.data mmrec   SRC --name NAME [--out atomic_data] [--overwrite] [--cold-start 0.2 [--seed 123]]
    python -m recbole_micro.data default [--out atomic_data] [--overwrite] [--seed 2022]

Prints the output folder on success. Bad input: one line on stderr, exit status 2, no traceback.
Ctrl-C (exit 130) and SIGTERM (exit 143): one line, no traceback, nothing half-written (the temporary
folder is removed; an existing dataset stays as it was).
"""

import sys
import time

from recbole_micro.cli_support import OneLineParser, run_interruptible
from recbole_micro.data import coldstart
from recbole_micro.data.convert import ConversionError, convert_lattice, convert_mmrec
from recbole_micro.data.default import DEFAULT_DATASET, DEFAULT_SEED, build_default_dataset

PROG = "python -m recbole_micro.data"


def _parser():
    parser = OneLineParser(prog=PROG, description="Write RecBole atomic files (interactions + feature atoms + yaml).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{lattice,mmrec,default}",
                                parser_class=OneLineParser)

    def common(p):
        p.add_argument("--out", default="atomic_data", help="folder that receives <out>/<name>/ (default: atomic_data)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing <out>/<name>")

    def cold(p):
        p.add_argument("--cold-start", type=float, default=None, metavar="FRACTION",
                       help="item cold-start split instead of the source's: FRACTION of the items (half valid, half "
                            "test) keep no training interaction; evaluation ranks each split over its cold items "
                            "(recbole_micro.data.coldstart; the reference uses 0.2)")
        p.add_argument("--seed", type=int, default=coldstart.DEFAULT_SEED,
                       help=f"seed of the cold-item draw (default {coldstart.DEFAULT_SEED}, the reference's)")

    p = sub.add_parser("lattice", help="LATTICE/MICRO layout: SRC/5-core/{train,val,test}.json + {image,text}_feat.npy")
    p.add_argument("src", metavar="SRC")
    p.add_argument("--name", required=True, help="dataset name (folder and file prefix)")
    common(p)
    cold(p)
    p = sub.add_parser("mmrec", help="MMRec layout: SRC/*.inter (userID, itemID, x_label) + {image,text}_feat.npy")
    p.add_argument("src", metavar="SRC")
    p.add_argument("--name", required=True, help="dataset name (folder and file prefix)")
    common(p)
    cold(p)
    p = sub.add_parser("default", help=f"embedded default dataset {DEFAULT_DATASET} (MovieLens-100k + content)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"split seed (default {DEFAULT_SEED})")
    common(p)
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    return run_interruptible(_run, args, PROG, "nothing half-written was left")


def _run(args):
    start = time.perf_counter()
    try:
        if args.command in ("lattice", "mmrec") and args.cold_start is not None:
            path = coldstart.convert_cold_start(args.command, args.src, args.name, out=args.out,
                                                overwrite=args.overwrite, fraction=args.cold_start, seed=args.seed)
        elif args.command == "lattice":
            path = convert_lattice(args.src, args.name, out=args.out, overwrite=args.overwrite)
        elif args.command == "mmrec":
            path = convert_mmrec(args.src, args.name, out=args.out, overwrite=args.overwrite)
        else:
            path = build_default_dataset(out=args.out, overwrite=args.overwrite, seed=args.seed)
    except ConversionError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG} {args.command}: error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
