"""Ray Tune, optional, on both API generations the plugin supports.

Ray is not a requirement (RecBole 1.2.1's ``ray<=2.6.3`` has no wheels for Python 3.12+). Ray 2.6.3
(Python 3.9-3.11) reports from a trial through ``ray.air.session.report(dict)`` and writes results under
``tune.run(local_dir=...)``; newer Ray (tested: 2.60 on Python 3.13) has ``ray.tune.report(dict)``,
``ray.tune.get_context()`` and ``tune.run(storage_path=...)`` (``local_dir`` raises there). The reporting
call is chosen by the functions' own signatures (Ray 2.7-2.4x: ``ray.train.report(dict)``), the
``tune.run`` keywords by Ray's release.
"""

import importlib.util
import inspect
import re
import sys

from recbole_micro.errors import ConfigError


class RayNotInstalled(ConfigError):
    """Ray Tune was asked for but is not installed (the message holds the install command)."""


def install_command():
    """The pip command that installs a Ray Tune the plugin works with on this Python."""
    if sys.version_info < (3, 12):
        return 'pip install "ray[tune]==2.6.3"'  # RecBole 1.2.1's own bound, ray<=2.6.3
    return 'pip install "ray[tune]>=2.60"'


def missing_message(what="Ray tuning (--tool ray)"):
    """One line: what needs Ray, that it is missing, and the command that installs it."""
    return (f"{what} needs Ray Tune, which is not installed in this environment "
            f"({sys.executable}): {install_command()}")


def available():
    """Whether ``ray`` can be imported (found, not imported: importing Ray takes seconds)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # ``sys.modules["ray"] = None`` blocks it; a broken partial import
        return False


def require(what="Ray tuning (--tool ray)"):
    """``(ray, ray.tune)``, or ``RayNotInstalled`` with the install command."""
    if not available():
        raise RayNotInstalled(missing_message(what))
    try:
        import ray
        from ray import tune
    except ImportError as error:
        raise RayNotInstalled(f"{missing_message(what)} (import failed: {error})") from None
    return ray, tune


def _ray_release():
    """Ray's ``(major, minor)`` as installed (``(0, 0)`` when it is not)."""
    import importlib.metadata

    try:
        version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        return (0, 0)
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def _takes_dict(function):
    """Whether ``function`` is the new ``report(metrics: dict, ...)`` (old: ``report(_metric=None, **kwargs)``)."""
    if function is None:
        return False
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False
    return bool(parameters) and parameters[0].name == "metrics" and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def report(metrics):
    """Report ``metrics`` (a dict) from inside a Tune trial, with whichever API this Ray has."""
    from ray import tune

    if _takes_dict(tune.report):  # Ray >= 2.4x: ray.tune.report(metrics)
        tune.report(dict(metrics))
        return
    try:  # Ray 2.7 - 2.4x: ray.train.report(metrics)
        from ray import train
    except ImportError:
        train = None
    if _takes_dict(getattr(train, "report", None)):
        train.report(dict(metrics))
        return
    from ray.air import session  # Ray 2.6

    session.report(dict(metrics))


def trial_id():
    """The id of the Tune trial this code runs in."""
    from ray import tune

    if hasattr(tune, "get_context"):
        return tune.get_context().get_trial_id()
    from ray.air import session

    return session.get_trial_id()


def run_options(results_dir):
    """``tune.run`` keywords for where results go and for not changing into the trial folder."""
    if _ray_release() < (2, 7):
        return {"local_dir": results_dir, "chdir_to_trial_dir": False}
    # newer Ray: local_dir and chdir_to_trial_dir raise; the trainable changes back to the caller's folder
    return {"storage_path": results_dir}
