"""What every command line of the plugin shares: ``--key=value`` overrides and one-line errors.

Used by ``cli.py`` (``run_recbole_micro.py``) and by the tools' scripts (``run_hyper.py``,
``run_compare.py``); it imports nothing of the plugin but its errors, so no entry point depends on another.
"""

import argparse
import contextlib
import signal
import sys
import warnings

from recbole_micro.errors import RecboleMicroError


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, ``PROG: error: MESSAGE (see --help)``, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_overrides(parser, argv):
    """``(args, overrides)``: the parser's options plus RecBole ``--key=value`` config overrides;
    anything else is a usage error."""
    args, unknown = parser.parse_known_args(argv)
    bad = [a for a in unknown if not (a.startswith("--") and "=" in a)]
    if bad:
        parser.error(f"unrecognised arguments {bad}; config overrides are written --key=value")
    return args, unknown


def quiet_library_notices():
    """Keep stderr for the user's errors: RecBole 1.2.1's pandas/amp deprecation notices and the
    ``pkg_resources`` notice that hyperopt and Ray trigger on setuptools >= 67 are not theirs to fix."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole(\.|$)")
    warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated", category=UserWarning)


def standalone(build_parser, run, prog, argv=None):
    """Entry point of a stand-alone script (``run_compare.py``, ``run_hyper.py``): parse, then
    ``run(args, overrides, prog, argv)`` with bad input reported as one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_library_notices()
    args, unknown = parse_overrides(build_parser(prog), argv)
    return exit_on_bad_input(run, args, unknown, prog, argv)


def exit_on_bad_input(action, *args):
    """Run ``action``; a ``RecboleMicroError`` (bad input) becomes one stderr line and exit status 2."""
    try:
        return action(*args)
    except RecboleMicroError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a cluster scheduler's time limit), raised in the main thread as a KeyboardInterrupt, so
    that every clean-up and resume record written for Ctrl-C is written for it too."""


@contextlib.contextmanager
def sigterm_interrupts():
    """Inside the block SIGTERM raises ``Terminated`` in the main thread (elsewhere the default is kept)."""
    def terminate(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: keep the default
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def interruption(stop):
    """``(exit status, word)`` of a KeyboardInterrupt: SIGTERM's (143, "terminated (SIGTERM)") or Ctrl-C's
    (130, "interrupted")."""
    return (143, "terminated (SIGTERM)") if isinstance(stop, Terminated) else (130, "interrupted")


def run_interruptible(run, args, prog, kept):
    """``run(args)`` of a command that writes files: Ctrl-C (exit 130) and SIGTERM (exit 143) end it with one
    line, ``<prog> <command>: interrupted; <kept>``, after its own clean-up ran (``kept`` says what is left)."""
    try:
        with sigterm_interrupts():
            return run(args)
    except KeyboardInterrupt as stop:
        code, word = interruption(stop)
        print(f"{prog} {args.command}: {word}; {kept}", file=sys.stderr)
        return code
