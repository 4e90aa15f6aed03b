"""Sub-commands of ``run_recbole_micro.py`` besides ``train``: ``COMMANDS[name] = (build_parser, action)``.

``cli.main`` dispatches ``argv[0]`` to ``action(args, unknown_overrides)``; a ``RecboleMicroError`` it
raises is printed as one line with exit status 2. ``tune`` and ``compare`` are the tools' command lines
(``recbole_micro.tools.cli``, also ``run_hyper.py`` and ``run_compare.py``).
"""

import sys

from recbole_micro.cli_support import OneLineParser
from recbole_micro.errors import ConfigError


def build_recommend_parser():
    parser = OneLineParser(
        prog="run_recbole_micro.py recommend",
        description="Top-k items for users of a saved model (their training items excluded).",
    )
    parser.add_argument("--checkpoint", required=True, help="a .pth file written by a training run")
    parser.add_argument("--users", required=True, help="comma-separated user tokens, e.g. 1,2,3")
    parser.add_argument("--topk", type=int, default=10, help="items per user (default 10)")
    parser.add_argument("--exclude", choices=["train", "train+valid"], default="train",
                        help="history to exclude: training interactions (default) or training + validation")
    parser.add_argument("--data_path", default=None,
                        help="folder holding the dataset's folder, if it moved since training (default: the one recorded)")
    parser.add_argument("--untrained_item_ids", choices=["keep", "zero", "content"], default=None,
                        help="multimodal models: score items without a training interaction with their ID embedding "
                        "(keep), with it read as zeros (zero) or from the content part of their score (content: "
                        "MICRO, LATTICE, FREEDOM, LGMRec, VBPR); default: as the model was trained")
    return parser


def recommend_action(args, overrides):
    from recbole_micro.recommend import format_recommendations, recommend, shortfall

    if overrides:
        raise ConfigError(f"recommend takes no config overrides, got {overrides}; the checkpoint holds the config")
    results = recommend(args.checkpoint, args.users.split(","), topk=args.topk, exclude=args.exclude,
                        data_path=args.data_path, untrained_item_ids=args.untrained_item_ids)
    print(format_recommendations(results))
    note = shortfall(results, args.topk)
    if note:
        print(f"warning: {note}", file=sys.stderr)
    return results


def _tune_parser():
    from recbole_micro.tools.cli import build_tune_parser

    return build_tune_parser("run_recbole_micro.py tune")


def _tune_action(args, overrides):
    from recbole_micro.tools.cli import run_tune

    return run_tune(args, overrides, "run_recbole_micro.py tune", sys.argv[2:])


def _compare_parser():
    from recbole_micro.tools.cli import build_compare_parser

    return build_compare_parser("run_recbole_micro.py compare")


def _compare_action(args, overrides):
    from recbole_micro.tools.cli import run_compare

    return run_compare(args, overrides, "run_recbole_micro.py compare", sys.argv[2:])


COMMANDS = {
    "recommend": (build_recommend_parser, recommend_action),
    "tune": (_tune_parser, _tune_action),  # hyper-parameter search (run_hyper.py)
    "compare": (_compare_parser, _compare_action),  # the baseline comparison (run_compare.py)
}
