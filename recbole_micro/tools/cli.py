r"""The command lines of the tools: ``run_hyper.py`` / ``run_recbole_micro.py tune`` (search) and
``run_compare.py`` / ``run_recbole_micro.py compare`` (comparison). Extra ``--key=value`` arguments are
config overrides; bad input ends with one ``error: ...`` line and exit status 2; Ctrl-C keeps what
finished (exit status 130).

    python run_hyper.py --model MICRO --dataset baby --algo random --max_evals 20 --epochs=100
    python run_hyper.py --model LightGCN --dataset baby --tool ray --ray_workers 2
    python run_compare.py --dataset baby --models BPR,LightGCN,LATTICE,MICRO --seeds 123,2020,7
    python run_compare.py --dataset baby --models BPR,LightGCN,LATTICE,MICRO --seeds 123,2020,7 --resume
    python run_compare.py --dataset baby --models MICRO --append       # a separate job, merged
    python run_compare.py --dataset baby --from-json                   # re-render the page only
"""

import os
import sys

from recbole_micro.cli_support import OneLineParser, interruption, sigterm_interrupts, standalone
from recbole_micro.errors import ConfigError
from recbole_micro.tools.files import command_line
from recbole_micro.tools.space import shipped_spaces


def _default_dataset(args):
    if args.dataset is None:
        from recbole_micro.data.default import DEFAULT_DATASET

        args.dataset = DEFAULT_DATASET


# --------------------------------------------------------------------------- tune

def build_tune_parser(prog="run_hyper.py"):
    parser = OneLineParser(
        prog=prog, allow_abbrev=False,
        description="Tune MICRO or any RecBole model with RecBole's HyperTuning (hyperopt) or Ray Tune. "
        "Trials select on the validation split; the export lists every trial and marks the best by "
        "validation. Extra --key=value arguments are config overrides applied to every trial.",
    )
    parser.add_argument("--model", "-m", default="MICRO", help="model name (default MICRO)")
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (default: the embedded ml-100k-mm)")
    parser.add_argument("--params_file", default=None,
                        help="search space: a .hyper path or a shipped name "
                        f"({', '.join(shipped_spaces())}); default: the model's name")
    parser.add_argument("--algo", default="exhaustive", choices=("exhaustive", "random", "bayes"),
                        help="search algorithm (default exhaustive)")
    parser.add_argument("--max_evals", type=int, default=None,
                        help="trials for random/bayes (default 100; hyperopt) or 10 (ray); caps an exhaustive grid")
    parser.add_argument("--output_file", default=None,
                        help="export stem: writes <stem>.json and <stem>.txt (default hyper_results/<model>-<dataset>)")
    parser.add_argument("--config_files", default=None, help="yaml config files, comma- or space-separated")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the finished trials of an interrupted run of the same search (its export)")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="train only the K-th of every N points the search proposes (exhaustive or random): N "
                        "jobs, each with its own --output_file, split one search; then run the whole search with "
                        "--reuse of their exports")
    parser.add_argument("--reuse", default=None, metavar="JSON[,JSON...]",
                        help="take over the finished trials of other exports of the same search (its shards) "
                        "instead of training them again")
    parser.add_argument("--early_stop", type=int, default=0,
                        help="stop after N trials without improvement (hyperopt; default 0 = never)")
    parser.add_argument("--search_seed", type=int, default=2020,
                        help="seed of the search algorithm (default 2020; the training seed is --seed=N)")
    parser.add_argument("--ray_verbose", type=int, default=0, help="Ray Tune's own console output, 0-3 (default 0)")
    parser.add_argument("--tool", default="hyperopt", choices=("hyperopt", "ray"),
                        help="hyperopt: sequential, RecBole's HyperTuning (default); ray: Ray Tune, parallel")
    parser.add_argument("--ray_workers", type=int, default=2, help="CPUs of the local Ray instance (default 2)")
    parser.add_argument("--ray_address", default=None, help="address of a running Ray cluster (e.g. auto)")
    parser.add_argument("--cpus_per_trial", type=float, default=1, help="Ray resources per trial (default 1)")
    parser.add_argument("--gpus_per_trial", type=float, default=0, help="Ray GPUs per trial (default 0)")
    return parser


def run_tune(args, overrides, prog="run_hyper.py", argv=None):
    """Run a search from parsed arguments; Ctrl-C ends with the export kept (exit status 130)."""
    from recbole_micro.tools.export import output_paths
    from recbole_micro.tools.search import default_output, tune_model

    _default_dataset(args)
    ray_options = {"workers": args.ray_workers, "address": args.ray_address,
                   "cpus_per_trial": args.cpus_per_trial, "gpus_per_trial": args.gpus_per_trial,
                   "verbose": args.ray_verbose}
    json_path, text_path = output_paths(args.output_file or default_output(args.model, args.dataset))
    try:
        with sigterm_interrupts():
            doc = tune_model(args.model, args.dataset, args.params_file, args.algo, args.max_evals, args.output_file,
                             args.config_files, overrides, args.tool, args.early_stop, args.search_seed, ray_options,
                             command_line(prog, argv), resume=args.resume, shard=args.shard, reuse=args.reuse)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM
        code, word = interruption(stop)
        print(f"\n[tune] {word}: the finished trials are kept in {json_path} and {text_path}; continue with the same "
              f"command and --resume", file=sys.stderr)
        sys.exit(code)
    print()
    with open(text_path, encoding="utf-8") as f:
        print(f.read())
    print(f"[tune] export: {json_path} (machine-readable), {text_path} (readable)")
    return doc


def tune_main(argv=None, prog="run_hyper.py"):
    """``run_hyper.py``."""
    return standalone(build_tune_parser, run_tune, prog, argv)


# --------------------------------------------------------------------------- compare

def build_compare_parser(prog="run_compare.py"):
    parser = OneLineParser(
        prog=prog, allow_abbrev=False,
        description="Run several models on one dataset under the same split, seeds, evaluator and epoch budget, "
        "and write <out>/<dataset>.md (table, significance, chart) and <out>/<dataset>.json. Extra --key=value "
        "arguments are config overrides applied to every model.",
    )
    parser.add_argument("--dataset", "-d", default=None, help="dataset name (default: the embedded ml-100k-mm)")
    parser.add_argument("--models", default="BPR,LightGCN,NGCF,MICRO",
                        help="comma-separated model names (default BPR,LightGCN,NGCF,MICRO)")
    parser.add_argument("--seeds", default=None,
                        help="comma-separated seeds, e.g. 123,2020,7: every model runs once per seed (default: the "
                        "config's seed)")
    parser.add_argument("--epochs", type=int, default=None, help="epoch budget for every model (default: the config's)")
    parser.add_argument("--tuned", default=None,
                        help="comma-separated tuning exports (run_hyper.py --output_file): each model's best-on-valid "
                        "parameters")
    parser.add_argument("--config_files", default=None, help="yaml config files for every model, comma-separated")
    parser.add_argument("--out", default="results", help="output folder (default results/)")
    parser.add_argument("--append", action="store_true",
                        help="merge into an existing <out>/<dataset>.json instead of starting a new one")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted comparison: keep its finished (model, seed) runs and continue "
                        "the unfinished one from its checkpoint (implies --append)")
    parser.add_argument("--retrain", action="store_true",
                        help="train a tuned model's run on the search's own seed again instead of taking over the "
                        "search's best trial, which is that run (same seed and configuration)")
    parser.add_argument("--name", default=None,
                        help="file this job's runs (one model) under another row of the page, for a labelled variant "
                        "beside the model's own row, e.g. --models MICRO --name MICRO-lambda1 --lambda_coeff=1.0")
    parser.add_argument("--from-json", "--from_json", dest="from_json", nargs="?", const="", default=None,
                        metavar="FILE", help="only re-render the page from a results JSON (default <out>/<dataset>.json)")
    return parser


def run_compare(args, overrides, prog="run_compare.py", argv=None):
    from recbole_micro.tools.compare import run_comparison
    from recbole_micro.tools.page import write_page
    from recbole_micro.tools.results import json_path, load_results

    if args.from_json and not os.path.isfile(args.from_json):
        raise ConfigError(f"{args.from_json} does not exist: pass a results JSON written by run_compare.py")
    if args.dataset is None and args.from_json:
        args.dataset = load_results(args.from_json)["dataset"]
    _default_dataset(args)
    if args.from_json is not None:
        path = args.from_json or json_path(args.out, args.dataset)
        if not os.path.isfile(path):
            raise ConfigError(f"{path} does not exist: run the comparison first (without --from-json)")
        doc = load_results(path)
        if doc["dataset"] != args.dataset:  # its page is named by the dataset it holds: it would replace another's
            raise ConfigError(f"{path} holds the runs of dataset '{doc['dataset']}', not '{args.dataset}': its page "
                              f"would overwrite {os.path.join(args.out, doc['dataset'] + '.md')}; pass --dataset "
                              f"{doc['dataset']} to re-render that page from this file")
        md, png = write_page(doc, args.out, data_dir=os.path.dirname(os.path.abspath(path)))
        print(f"[compare] wrote {md}" + (f" and {png}" if png else ""))
        return doc
    try:
        with sigterm_interrupts():
            doc = run_comparison(args.dataset, args.models, args.epochs, args.tuned, overrides, args.config_files,
                                 args.out, args.append, command_line(prog, argv), seeds=args.seeds,
                                 resume=args.resume, name=args.name, retrain=args.retrain)
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM
        code, word = interruption(stop)
        print(f"\n[compare] {word}: finished runs are kept in {json_path(args.out, args.dataset)}; continue "
              f"with the same command and --resume", file=sys.stderr)
        sys.exit(code)
    print(f"[compare] wrote {os.path.join(args.out, args.dataset + '.md')}, .png and .json")
    return doc


def compare_main(argv=None, prog="run_compare.py"):
    """``run_compare.py``."""
    return standalone(build_compare_parser, run_compare, prog, argv)
