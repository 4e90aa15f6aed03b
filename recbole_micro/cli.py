"""Command line of ``run_recbole_micro.py`` (also installed as ``recbole-micro``).

``train`` (the default) runs one model on one dataset and prints best-valid and test metrics; any
``--key=value`` argument is a RecBole config override, read by RecBole's ``Config`` itself.
Bad input ends with one line on stderr and exit status 2, never a traceback.
"""

import sys

from recbole_micro.cli_support import (
    OneLineParser, exit_on_bad_input, interruption, parse_overrides, quiet_library_notices, sigterm_interrupts,
)


def _train(args, overrides):
    from recbole_micro.quick_start import run_recbole_micro
    from recbole_micro.report import metrics_table

    sys.argv = [sys.argv[0]] + overrides  # RecBole's Config reads --key=value from sys.argv
    config_files = [f.strip() for f in args.config_files.split(",") if f.strip()] if args.config_files else None
    try:
        with sigterm_interrupts():
            result = run_recbole_micro(model=args.model, dataset=args.dataset, config_file_list=config_files,
                                       resume=args.resume)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: one line naming the resume point
        code, word = interruption(stop)
        resume_point = getattr(stop, "resume_point", None)
        kept = (f"continue with --resume {resume_point}" if resume_point else
                "no epoch had finished: nothing to resume")
        print(f"\nrun_recbole_micro.py train: {word}; {kept}", file=sys.stderr)
        sys.exit(code)
    print(f"\n{result['model']} on {result['dataset']} ({result['epochs_run']} epochs, "
          f"{result['seconds_per_epoch']:.2f} s/epoch); checkpoint {result['checkpoint']}")
    print(metrics_table(result))
    return result


def build_parser():
    parser = OneLineParser(
        prog="run_recbole_micro.py",
        description="Train and evaluate MICRO (or any RecBole model) on multimodal atomic data. "
        "Extra --key=value arguments override RecBole config keys.",
    )
    parser.add_argument("--model", "-m", default="MICRO", help="model name: MICRO, LATTICE or any RecBole model (default MICRO)")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name under data_path (default: the embedded ml-100k-mm)")
    parser.add_argument("--config_files", default=None, help="comma-separated yaml config files")
    parser.add_argument("--resume", default=None, metavar="CHECKPOINT",
                        help="continue an interrupted run from its checkpoint (<model>-<time>-last.pth or the best one)")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_library_notices()
    commands = {"train": (build_parser, _train)}
    try:
        from recbole_micro import commands as extra  # sub-commands added by later modules

        commands.update(extra.COMMANDS)
    except ImportError:
        pass
    name = argv.pop(0) if argv and argv[0] in commands else "train"
    make_parser, action = commands[name]
    args, unknown = parse_overrides(make_parser(), argv)
    if getattr(args, "dataset", "unset") is None:
        from recbole_micro.data.default import DEFAULT_DATASET

        args.dataset = DEFAULT_DATASET
    return exit_on_bad_input(action, args, unknown)
