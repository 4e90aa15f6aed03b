r"""RecBole 1.2.1 on today's numpy, pandas, scipy, hyperopt, setuptools and Ray: one small fix per break
(and, on every version, one for a race in RecBole itself and one for the speed of its LightGCN).

RecBole 1.2.1 (its latest release) was written against numpy 1.x, pandas < 3, scipy < 1.13,
hyperopt 0.2.5 and a setuptools that ships ``pkg_resources``. ``apply()`` (run by ``import
recbole_micro``) registers the fixes this environment needs; a fix whose library is older than the
release that broke RecBole is never registered, so the old pins run RecBole's own code unchanged, but
for the last two rows of the table (a race and a slow product in RecBole itself, fixed on every version).
Each fix replaces one RecBole function (a copy of RecBole's own code where only a library call is
redirected, or a short wrapper), applied when RecBole's module is first imported (a post-import
hook) or at once if it already is; ``import recbole_micro`` stays cheap.

====================  ======================================  ==========================================
break (from)          RecBole function fixed                  fix
====================  ======================================  ==========================================
numpy 2.0             ``Config.compatibility_settings``       the aliases it defines (``np.float``,
                      (recbole/config/configurator.py)        ``np.int`` ...) point at numpy 2 names: it
                                                              stops at the removed ``np.float_``
pandas 3.0            ``Dataset._load_feat``                  its ``read_csv`` reads token columns as
                      (recbole/data/dataset/dataset.py)       ``object`` (pandas 3: ``str``, whose
                                                              ``.values`` is no ndarray) and fills empty
                                                              ``*_seq`` cells with ``""`` (its
                                                              ``fillna(inplace=True)`` is a no-op)
pandas 3.0            ``Dataset._fill_nan``                   token/float gaps filled by assignment
pandas 3.0            ``Dataset._dataframe_to_interaction``   ``torch.Long/FloatTensor`` of a writable
                                                              copy (``.values`` is read-only under CoW)
pandas 3.0            ``Dataset._remap``, ``_normalize``,     ``series.agg(len)`` gives per-row lengths
                      ``_discretization``; KG dataset's       again (pandas 3 calls ``len(series)``)
                      ``_reset_ent_remapID``; sequential
                      dataset's ``_benchmark_presets``
scipy 1.13            LightGCN/NGCF/NCL/GCMC                  the ``sp.dok_matrix`` each builds gets
                      ``get_norm_adj_mat``, SpectralCF        back ``_update`` (removed), done through
                      ``get_laplacian_matrix``, KGIN/MCCLK    scipy's public item assignment
                      ``get_norm_inter_matrix``
hyperopt 0.2.7        ``exhaustive_search``                   draws from ``np.random.default_rng``:
                      (recbole/trainer/hyper_tuning.py)       hyperopt's samplers call ``rng.integers``
ray <= 2.6.3 on       (Ray's) ``ray.tune.logger.*``           ``np.bool8`` defined while those modules
numpy 2.0                                                     execute; in Ray workers too, through
                                                              Ray's ``RAY_RUNTIME_ENV_HOOK``
setuptools 81         ``import ray`` (``recbole.quick_start``  a ``pkg_resources`` stand-in
                      and every Ray worker)                   (``recbole_micro/_standin``) on the path
no Ray (optional;     ``recbole.quick_start`` imports         a ``ray.tune`` stand-in (``report`` does
no ray<=2.6.3 wheels  ``from ray import tune`` at its top     nothing) while that module executes; out
for Python 3.12+)                                             of ``sys.modules`` right after
ray 2.7               ``objective_function``                  ``tune.report(**test_result)`` reported
                      (recbole/quick_start/quick_start.py)    as one dict (``recbole_micro.raytune``)
runs at once (every   ``ensure_dir`` (recbole/utils/utils.py  ``os.makedirs(path, exist_ok=True)``: its
version)              and each module that imported it)       exists-then-makedirs lets the second of two
                                                              runs creating one folder (the shared
                                                              ``checkpoint_dir`` of Ray trials, side-by-side
                                                              jobs, DDP ranks) fail with FileExistsError
lightgcn speed        ``LightGCN.forward``                    its Â·E products on CSR copies of Â and Âᵀ
(every version)       (recbole/model/general_recommender/     made once (``graphs.sparse_mm``): torch's
                      lightgcn.py)                            backward of ``torch.sparse.mm`` coalesces Âᵀ
                                                              at every product. Same numbers (bit-equal
                                                              here), ≈ 2× faster per batch on the CPU
====================  ======================================  ==========================================

``applied()`` lists the fixes in force in this process; ``report()`` prints the versions and fixes
(``python -c "from recbole_micro import compat; compat.report()"``). To reproduce a break, turn fixes
off by name in the environment: ``RECBOLE_MICRO_COMPAT_OFF=pandas>=3,scipy>=1.13`` (or ``all``).
"""

import functools
import importlib
import importlib.abc
import importlib.util
import os
import re
import sys
import types
import warnings

STANDIN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_standin")

_APPLIED = []  # (fix name, "module.function") in the order applied
_HOOKS = {}  # module name -> [patch functions], run once the module has executed
_BEFORE = {}  # module name -> [patch functions], run right before the module executes
_MARK = "_recbole_micro_compat"  # attribute on replaced functions: the fix that replaced them


# ------------------------------------------------------------------ versions

def release(version):
    """``"1.13.0rc1"`` -> ``(1, 13, 0)``, ``"2.13.0+cpu"`` -> ``(2, 13, 0)``: the leading numeric parts."""
    match = re.match(r"\d+(?:\.\d+)*", str(version))
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def installed(distribution):
    """Release tuple of an installed distribution, or None when it is not installed."""
    import importlib.metadata

    try:
        return release(importlib.metadata.version(distribution))
    except importlib.metadata.PackageNotFoundError:
        return None


def hyperopt_rstate(seed):
    """The ``rstate`` that hyperopt's ``fmin`` takes: a ``Generator`` from 0.2.7 on, a ``RandomState`` before."""
    import numpy as np

    new = (installed("hyperopt") or (0,)) >= (0, 2, 7)
    return np.random.default_rng(seed) if new else np.random.RandomState(seed)


# ------------------------------------------------------------------ machinery

class _Overlay(types.ModuleType):
    """A module seen through a few replaced attributes; every other look-up goes to the module."""

    def __init__(self, module, **replaced):
        super().__init__(module.__name__, getattr(module, "__doc__", None))
        self.__dict__.update(replaced)
        self.__dict__["_overlaid"] = module

    def __getattr__(self, name):
        return getattr(self.__dict__["_overlaid"], name)


def _rebound(function, **names):
    """A copy of ``function`` whose global ``name`` look-ups see ``names`` instead (the module is untouched)."""
    scope = dict(function.__globals__, **names)
    copy = types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__,
                              function.__closure__)
    copy.__kwdefaults__ = function.__kwdefaults__
    functools.update_wrapper(copy, function)
    return copy


def _replace(owner, name, replacement, fix):
    """Put ``replacement`` at ``owner.name`` (once), marked with the fix and keeping the original as ``__wrapped__``."""
    original = getattr(owner, name)
    if getattr(original, _MARK, None) == fix:
        return
    if not hasattr(replacement, "__wrapped__"):
        replacement.__wrapped__ = original
    setattr(replacement, _MARK, fix)
    setattr(owner, name, replacement)
    where = owner.__name__ if isinstance(owner, types.ModuleType) else f"{owner.__module__}.{owner.__qualname__}"
    _APPLIED.append((fix, f"{where}.{name}"))


class _PatchingLoader(importlib.abc.Loader):
    """Wraps a hooked module's loader: executes the module, then runs its patches."""

    def __init__(self, loader, name):
        self._loader, self._name = loader, name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        undo = [patch() for patch in _BEFORE.get(self._name, ())]
        try:
            self._loader.exec_module(module)
        finally:
            for restore in undo:
                if restore is not None:
                    restore()
        for patch in _HOOKS.get(self._name, ()):
            patch(module)

    def __getattr__(self, name):  # get_source, get_resource_reader, ... of the real loader
        return getattr(self._loader, name)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds a hooked module with the other finders and hands back its spec with a patching loader."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _HOOKS and fullname not in _BEFORE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader, fullname)
        return spec


_FINDER = _PostImportFinder()


def _when_imported(module_name, patch):
    """Run ``patch(module)`` now if ``module_name`` is imported, else right after its first import."""
    hooks = _HOOKS.setdefault(module_name, [])
    if patch not in hooks:
        hooks.append(patch)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    module = sys.modules.get(module_name)
    if module is not None:
        patch(module)


def _while_importing(module_name, patch):
    """Run ``patch()`` right before ``module_name`` executes; the callable it returns (if any) runs after."""
    patches = _BEFORE.setdefault(module_name, [])
    if patch not in patches:
        patches.append(patch)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


# ------------------------------------------------------------------ numpy >= 2

# What RecBole's Config.compatibility_settings sets, with numpy 2 names for the targets numpy 2
# removed (np.float_ -> np.float64, np.complex_ -> np.complex128, np.unicode_ -> np.str_). Aliases
# numpy 2 defines itself (np.bool, np.long) are left as numpy defines them.
_NUMPY_ALIASES = {"bool": "bool_", "int": "int_", "float": "float64", "complex": "complex128",
                  "object": "object_", "str": "str_", "long": "int_", "unicode": "str_"}


def _compatibility_settings(self):
    """RecBole's ``Config.compatibility_settings`` for numpy >= 2: the same aliases, valid targets.

    RecBole's dataset, evaluator and interaction code use ``np.float``, ``np.int``, ``np.str`` ...
    (removed in numpy 1.24/2.0) and relies on this method to define them; the original stops at
    ``np.float_``, which numpy 2 removed too. ``recbole_micro.checkpoint`` calls it after loading a
    checkpoint, so a fresh process that only loads one gets the aliases as well.
    """
    import numpy as np

    for alias, target in _NUMPY_ALIASES.items():
        if alias not in vars(np):
            setattr(np, alias, getattr(np, target))


def _fix_numpy(configurator):
    _replace(configurator.Config, "compatibility_settings", _compatibility_settings, "numpy>=2")


# ------------------------------------------------------------------ pandas >= 3

_SEQ_TYPES = ("token_seq", "float_seq")


def _read_atomic_csv(*args, **kwargs):
    """``pandas.read_csv`` as RecBole's ``Dataset._load_feat`` calls it, returning what pandas 2 returned.

    * ``dtype=str`` columns are read as ``object``: pandas 3 would give its ``str`` dtype, whose
      ``.values`` is no numpy array (``Dataset.token2id`` and others test for ``np.ndarray``);
    * empty ``*_seq`` cells become ``""``: RecBole's ``df[field].fillna(value="", inplace=True)`` right
      after the read fills nothing under copy-on-write, and ``_.split(...)`` then fails on NaN.
    """
    import pandas as pd

    dtype = kwargs.get("dtype")
    if isinstance(dtype, dict):
        kwargs["dtype"] = {col: (object if kind is str else kind) for col, kind in dtype.items()}
    frame = pd.read_csv(*args, **kwargs)
    for column in frame.columns:
        if str(column).rpartition(":")[2] in _SEQ_TYPES:
            frame[column] = frame[column].fillna("")
    return frame


def _quiet_chained_assignment(function):
    """Call ``function`` without pandas 3's ChainedAssignmentError for the fills already done by assignment."""
    import pandas as pd

    category = getattr(pd.errors, "ChainedAssignmentError", None)

    @functools.wraps(function)
    def call(*args, **kwargs):
        if category is None:
            return function(*args, **kwargs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=category)
            return function(*args, **kwargs)

    return call


def _fill_nan_by_assignment(original):
    """RecBole's ``Dataset._fill_nan`` for pandas >= 3.

    The original fills token gaps with 0 (``[PAD]``) and float gaps with the column mean through
    ``feat[field].fillna(..., inplace=True)``, which copy-on-write turns into a no-op. Fill those two
    kinds by assignment first (the same values), then run the original for the sequence fields
    (its inplace calls then have nothing left to fill).
    """
    from recbole.utils import FeatureType

    def _fill_nan(self):
        for feat_name in self.feat_name_list:
            feat = getattr(self, feat_name)
            for field in feat:
                ftype = self.field2type[field]
                if ftype == FeatureType.TOKEN:
                    feat[field] = feat[field].fillna(value=0)
                elif ftype == FeatureType.FLOAT:
                    feat[field] = feat[field].fillna(value=feat[field].mean())
        return _quiet_chained_assignment(original)(self)

    return _fill_nan


def _from_writable(constructor):
    """``torch.LongTensor`` / ``torch.FloatTensor`` that get a writable copy of a read-only numpy array.

    Under copy-on-write a column's ``.values`` is a read-only view of a buffer other frames may share;
    torch warns (once, on stderr) that it does not support non-writable arrays, and ``LongTensor``
    would share that buffer. Under pandas 2 it shared the writable buffer of a frame RecBole then drops.
    """

    def build(data, *args):
        import numpy as np

        if isinstance(data, np.ndarray) and not data.flags.writeable:
            data = np.array(data)
        return constructor(data, *args)

    build.__name__ = constructor.__name__
    return build


def _elementwise_len(obj):
    """``len`` for RecBole functions that call ``series.agg(len)`` for the length of every sequence.

    pandas < 3 applied a callable passed to ``Series.agg`` element by element when it could; pandas 3
    calls it on the whole Series, so ``agg(len)`` became the row count. Given a Series this returns
    the per-row lengths (what pandas 2 returned); anything else gets the built-in ``len``.
    """
    import builtins

    import pandas as pd

    if isinstance(obj, pd.Series):
        return obj.map(builtins.len)
    return builtins.len(obj)


# RecBole functions whose ``feat[field].agg(len)`` means per-row sequence lengths (and whose other
# ``len`` calls take lists or arrays): module -> (class, methods).
_AGG_LEN_USERS = {
    "recbole.data.dataset.dataset": ("Dataset", ("_remap", "_normalize", "_discretization")),
    "recbole.data.dataset.kg_dataset": ("KnowledgeBasedDataset", ("_reset_ent_remapID",)),
    "recbole.data.dataset.sequential_dataset": ("SequentialDataset", ("_benchmark_presets",)),
}


def _fix_agg_len(module):
    class_name, methods = _AGG_LEN_USERS[module.__name__]
    owner = getattr(module, class_name)
    for method in methods:
        function = vars(owner)[method]
        if getattr(function, _MARK, None) != "pandas>=3":
            _replace(owner, method, _rebound(function, len=_elementwise_len), "pandas>=3")


def _fix_pandas(dataset_module):
    import pandas as pd
    import torch

    dataset = dataset_module.Dataset
    if getattr(dataset._load_feat, _MARK, None) != "pandas>=3":
        load_feat = _rebound(dataset._load_feat, pd=_Overlay(pd, read_csv=_read_atomic_csv))
        _replace(dataset, "_load_feat", _quiet_chained_assignment(load_feat), "pandas>=3")
    if getattr(dataset._fill_nan, _MARK, None) != "pandas>=3":
        _replace(dataset, "_fill_nan", _fill_nan_by_assignment(dataset._fill_nan), "pandas>=3")
    if getattr(dataset._dataframe_to_interaction, _MARK, None) != "pandas>=3":
        _replace(dataset, "_dataframe_to_interaction",
                 _rebound(dataset._dataframe_to_interaction, torch=_Overlay(
                     torch, LongTensor=_from_writable(torch.LongTensor), FloatTensor=_from_writable(torch.FloatTensor))),
                 "pandas>=3")


# ------------------------------------------------------------------ scipy >= 1.13

def _dok_update(self, data):
    """``dok_matrix._update`` as scipy < 1.13 had it: store ``{(row, col): value}`` as given."""
    import numpy as np

    if not data:
        return
    keys = np.array(list(data.keys()), dtype=np.int64).reshape(-1, 2)
    self[keys[:, 0], keys[:, 1]] = np.fromiter(data.values(), dtype=self.dtype, count=len(data))


def _dok_matrix_with_update(*args, **kwargs):
    """``scipy.sparse.dok_matrix(...)`` whose instance has ``_update`` again (scipy 1.13 removed it)."""
    import scipy.sparse as sp

    matrix = sp.dok_matrix(*args, **kwargs)
    matrix._update = types.MethodType(_dok_update, matrix)
    return matrix


# RecBole 1.2.1's graph builders that call ``A._update(data_dict)`` on a ``sp.dok_matrix``.
_DOK_UPDATE_USERS = {
    "recbole.model.general_recommender.lightgcn": ("LightGCN", "get_norm_adj_mat"),
    "recbole.model.general_recommender.ngcf": ("NGCF", "get_norm_adj_mat"),
    "recbole.model.general_recommender.ncl": ("NCL", "get_norm_adj_mat"),
    "recbole.model.general_recommender.gcmc": ("GCMC", "get_norm_adj_mat"),
    "recbole.model.general_recommender.spectralcf": ("SpectralCF", "get_laplacian_matrix"),
    "recbole.model.knowledge_aware_recommender.kgin": ("KGIN", "get_norm_inter_matrix"),
    "recbole.model.knowledge_aware_recommender.mcclk": ("MCCLK", "get_norm_inter_matrix"),
}


def _fix_scipy(module):
    import scipy.sparse as sp

    class_name, method = _DOK_UPDATE_USERS[module.__name__]
    owner = getattr(module, class_name)
    function = getattr(owner, method)
    if getattr(function, _MARK, None) == "scipy>=1.13":
        return
    _replace(owner, method, _rebound(function, sp=_Overlay(sp, dok_matrix=_dok_matrix_with_update)),
             "scipy>=1.13")


# ------------------------------------------------------------------ hyperopt >= 0.2.7

def _fix_hyperopt(hyper_tuning):
    """RecBole's ``exhaustive_search`` draws from ``np.random.RandomState(seed)``; hyperopt >= 0.2.7's
    samplers call ``rng.integers`` (the Generator API), so give it ``np.random.default_rng(seed)``.
    ``HyperTuning.__init__`` looks the function up by name, so replacing the module attribute suffices."""
    import numpy as np

    if getattr(hyper_tuning.exhaustive_search, _MARK, None) == "hyperopt>=0.2.7":
        return
    generator_np = _Overlay(np, random=_Overlay(np.random, RandomState=np.random.default_rng))
    _replace(hyper_tuning, "exhaustive_search", _rebound(hyper_tuning.exhaustive_search, np=generator_np),
             "hyperopt>=0.2.7")


# ------------------------------------------------------------------ ray <= 2.6 on numpy >= 2

# Ray's Tune loggers list ``np.bool8`` (removed in numpy 2) in class bodies, so ``import ray.tune`` fails.
_RAY_BOOL8_USERS = ("ray.tune.logger.tensorboardx", "ray.tune.logger.aim")


def _bool8_while_importing():
    """Define ``np.bool8`` (numpy 1's alias of ``np.bool_``) while one of Ray's logger modules executes."""
    import numpy as np

    if "bool8" in vars(np):
        return None
    np.bool8 = np.bool_

    def restore():
        vars(np).pop("bool8", None)

    return restore


def ray_worker_setup():
    """Ray ``worker_process_setup_hook``: importing this module (``recbole_micro``) in a Ray worker applies
    the fixes there before the worker unpickles a Tune trainable (which imports ``ray.tune``)."""
    apply()


def _run_both(first, second):
    first()
    second()


def ray_runtime_env(runtime_env):
    """``RAY_RUNTIME_ENV_HOOK`` for ``ray.init``: add ``ray_worker_setup`` as the workers' setup hook (run
    before a setup hook the caller passed; a ``RAY_RUNTIME_ENV_HOOK`` set before ours still runs first)."""
    previous = _PREVIOUS_RAY_HOOK
    if previous:
        module, _, name = previous.rpartition(".")
        runtime_env = getattr(importlib.import_module(module), name)(runtime_env)
    runtime_env = dict(runtime_env or {})
    own = runtime_env.get("worker_process_setup_hook")
    if own is None:
        runtime_env["worker_process_setup_hook"] = ray_worker_setup
    elif callable(own) and own is not ray_worker_setup:
        runtime_env["worker_process_setup_hook"] = functools.partial(_run_both, ray_worker_setup, own)
    return runtime_env


_PREVIOUS_RAY_HOOK = None


def _fix_ray():
    """Ray workers import ``ray.tune`` before any code of ours runs: hook ``ray.init`` (through Ray's own
    ``RAY_RUNTIME_ENV_HOOK``) so each worker first imports ``recbole_micro`` and gets the alias too."""
    global _PREVIOUS_RAY_HOOK
    for module_name in _RAY_BOOL8_USERS:
        _while_importing(module_name, _bool8_while_importing)
    hook = f"{__name__}.ray_runtime_env"
    current = os.environ.get("RAY_RUNTIME_ENV_HOOK")
    if current != hook:
        _PREVIOUS_RAY_HOOK = current
        os.environ["RAY_RUNTIME_ENV_HOOK"] = hook
    if ("ray<2.7 on numpy>=2", "ray.tune.logger (np.bool8)") not in _APPLIED:
        _APPLIED.append(("ray<2.7 on numpy>=2", "ray.tune.logger (np.bool8)"))


# ------------------------------------------------------------------ Ray not installed / Ray >= 2.7

# ``recbole/quick_start/quick_start.py`` runs ``from ray import tune`` at import time (for one call,
# ``tune.report(**test_result)`` in ``objective_function``), so without Ray ``import recbole.quick_start``
# fails although nothing else needs Ray. RecBole's tracker: #1820, #1990; PR #2187 (lazy import, unmerged).
_QUICK_START = "recbole.quick_start.quick_start"
# What that module imports besides ray, imported before the stand-in goes in, so that only the module's
# own top level runs while ``sys.modules`` holds it.
_QUICK_START_IMPORTS = ("torch.distributed", "recbole.config", "recbole.data", "recbole.data.transform",
                        "recbole.utils")


class _TuneStandIn(types.ModuleType):
    """``ray.tune`` as RecBole's quick_start sees it when Ray is not installed. ``report`` does what Ray
    2.6's ``tune.report`` does outside a Tune trial (nothing); any other name raises the install line."""

    def report(self, *args, **kwargs):  # noqa: ARG002 - outside Ray Tune there is nobody to report to
        return None

    def __getattr__(self, name):  # AttributeError: ``hasattr`` probes (inspect, pickle) stay harmless
        from recbole_micro.raytune import missing_message

        raise AttributeError(missing_message(f"ray.tune.{name}"))


def _ray_standin_while_importing():
    """Give RecBole's quick_start a ``ray`` holding the ``tune`` stand-in while it executes, and take it out
    of ``sys.modules`` right after: the module keeps its ``tune`` and a user's own ``import ray`` still fails."""
    for name in _QUICK_START_IMPORTS:
        importlib.import_module(name)
    marker = object()
    saved = {name: sys.modules.get(name, marker) for name in ("ray", "ray.tune")}
    ray = types.ModuleType("ray", "recbole_micro.compat's stand-in while recbole.quick_start executes")
    ray.tune = _TuneStandIn("ray.tune")
    sys.modules["ray"], sys.modules["ray.tune"] = ray, ray.tune

    def restore():
        for name, module in saved.items():
            if module is marker:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module

    return restore


def _fix_no_ray():
    _while_importing(_QUICK_START, _ray_standin_while_importing)
    if ("no ray", f"{_QUICK_START} (from ray import tune)") not in _APPLIED:
        _APPLIED.append(("no ray", f"{_QUICK_START} (from ray import tune)"))


def _report_keywords(_metric=None, **kwargs):
    """RecBole's ``tune.report(**test_result)`` on Ray >= 2.7, whose reporting takes one dict
    (``ray.tune.report(metrics)`` / ``ray.train.report(metrics)``); outside a trial it does nothing."""
    from recbole_micro import raytune

    metrics = dict(kwargs)
    if _metric is not None:
        metrics["_metric"] = _metric
    raytune.report(metrics)


def _fix_tune_report(quick_start):
    """Replace ``objective_function`` by a copy whose ``tune`` has ``report`` of the keywords as a dict."""
    function = quick_start.objective_function
    if getattr(function, _MARK, None) == "ray>=2.7":
        return
    _replace(quick_start, "objective_function",
             _rebound(function, tune=_Overlay(quick_start.tune, report=_report_keywords)), "ray>=2.7")
    package = sys.modules.get("recbole.quick_start")  # imported before: it bound the original name
    if package is not None and getattr(package, "objective_function", None) is function:
        package.objective_function = quick_start.objective_function


# ------------------------------------------------------------------ runs at once (every version)

# the modules that bound RecBole's ``ensure_dir`` by name (``from recbole.utils import ensure_dir``)
_ENSURE_DIR_USERS = ("recbole.utils.utils", "recbole.utils", "recbole.utils.logger", "recbole.trainer.trainer",
                     "recbole.data.utils", "recbole.data.dataset.dataset")


def _ensure_dir(dir_path):
    """RecBole's ``ensure_dir`` without its race: a folder another run creates meanwhile is no error."""
    os.makedirs(dir_path, exist_ok=True)


def _fix_ensure_dir(module):
    if getattr(module, "ensure_dir", None) is not None:
        _replace(module, "ensure_dir", _ensure_dir, "runs at once")


# ------------------------------------------------------------------ lightgcn speed (every version)

def _fix_lightgcn_speed(lightgcn):
    """``LightGCN.forward`` with its ``torch.sparse.mm`` redirected to ``graphs.sparse_mm`` (the cached CSR
    products of Â and Âᵀ), Â coalesced once first (the cache is keyed by the coalesced tensor)."""
    import torch

    from recbole_micro.model.graphs import sparse_mm

    owner = lightgcn.LightGCN
    if getattr(owner.forward, _MARK, None) == "lightgcn speed":
        return
    cached = _rebound(owner.forward, torch=_Overlay(torch, sparse=_Overlay(torch.sparse, mm=sparse_mm)))

    @functools.wraps(owner.forward)
    def forward(self):
        if not self.norm_adj_matrix.is_coalesced():
            self.norm_adj_matrix = self.norm_adj_matrix.coalesce()
        return cached(self)

    _replace(owner, "forward", forward, "lightgcn speed")


# ------------------------------------------------------------------ setuptools >= 81

def _real_pkg_resources():
    """Whether a ``pkg_resources`` other than the stand-in can be imported (found, not imported)."""
    import importlib.machinery

    if getattr(sys.modules.get("pkg_resources"), "STANDIN", False):
        return False
    if "pkg_resources" in sys.modules:
        return True
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != STANDIN_PATH]
    return importlib.machinery.PathFinder.find_spec("pkg_resources", path) is not None


def _fix_pkg_resources():
    """Ray <= 2.6.3 (RecBole 1.2.1 requires ray <= 2.6.3) imports ``pkg_resources`` when it starts --
    in ``recbole.quick_start`` and in every Ray worker. Append the stand-in's folder to ``sys.path``
    (after the real site-packages: a real ``pkg_resources`` always wins) and to ``PYTHONPATH`` so
    that Ray's worker processes, which import ray before anything of ours, find it too."""
    if STANDIN_PATH not in sys.path:
        sys.path.append(STANDIN_PATH)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if STANDIN_PATH not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join(paths + [STANDIN_PATH])
    if ("setuptools>=81", "pkg_resources") not in _APPLIED:
        _APPLIED.append(("setuptools>=81", "pkg_resources"))


# ------------------------------------------------------------------ entry points

def _ray_importable():
    """Whether ``import ray`` can work (found, not imported; ``sys.modules["ray"] = None`` blocks it)."""
    from recbole_micro.raytune import available

    return available()


def needed():
    """The fixes this environment needs, by name: the installed versions decide."""
    versions = {name: installed(name) or (0,) for name in ("numpy", "pandas", "scipy", "hyperopt", "ray")}
    fixes = []
    if versions["numpy"] >= (2,):
        fixes.append("numpy>=2")
    if versions["pandas"] >= (3,):
        fixes.append("pandas>=3")
    if versions["scipy"] >= (1, 13):
        fixes.append("scipy>=1.13")
    if versions["hyperopt"] >= (0, 2, 7):
        fixes.append("hyperopt>=0.2.7")
    if versions["numpy"] >= (2,) and (0,) < versions["ray"] < (2, 7):
        fixes.append("ray<2.7 on numpy>=2")
    if not _ray_importable():
        fixes.append("no ray")
    elif versions["ray"] >= (2, 7):
        fixes.append("ray>=2.7")
    if not _real_pkg_resources():
        fixes.append("setuptools>=81")
    fixes += ["runs at once", "lightgcn speed"]  # RecBole 1.2.1's own race and speed, whatever the versions
    return fixes


def apply():
    """Register every fix this environment needs (idempotent). Returns ``applied()``."""
    if installed("recbole") is None:  # Python 3.12+: RecBole is installed by hand, without its dependencies
        raise ModuleNotFoundError("recbole-micro needs RecBole 1.2.1, which is not installed: "
                                  "pip install --no-deps recbole==1.2.1 (README, Install)", name="recbole")
    off = {name.strip() for name in os.environ.get("RECBOLE_MICRO_COMPAT_OFF", "").split(",") if name.strip()}
    fixes = [] if "all" in off else [fix for fix in needed() if fix not in off]
    if "numpy>=2" in fixes:
        _when_imported("recbole.config.configurator", _fix_numpy)
    if "pandas>=3" in fixes:
        _when_imported("recbole.data.dataset.dataset", _fix_pandas)
        for module_name in _AGG_LEN_USERS:
            _when_imported(module_name, _fix_agg_len)
    if "scipy>=1.13" in fixes:
        for module_name in _DOK_UPDATE_USERS:
            _when_imported(module_name, _fix_scipy)
    if "hyperopt>=0.2.7" in fixes:
        _when_imported("recbole.trainer.hyper_tuning", _fix_hyperopt)
    if "ray<2.7 on numpy>=2" in fixes:
        _fix_ray()
    if "no ray" in fixes:
        _fix_no_ray()
    if "ray>=2.7" in fixes:
        _when_imported(_QUICK_START, _fix_tune_report)
    if "setuptools>=81" in fixes:
        _fix_pkg_resources()
    if "runs at once" in fixes:
        for module_name in _ENSURE_DIR_USERS:
            _when_imported(module_name, _fix_ensure_dir)
    if "lightgcn speed" in fixes:
        _when_imported("recbole.model.general_recommender.lightgcn", _fix_lightgcn_speed)
    return applied()


def fixed_by(function):
    """Name of the fix that replaced ``function`` (a RecBole function), or None for RecBole's own."""
    return getattr(function, _MARK, None)


def applied():
    """``[(fix, "module.Class.function"), ...]`` replaced so far in this process."""
    return list(_APPLIED)


def report():
    """Print the installed versions and the fixes in force (importing RecBole's patched modules first)."""
    import recbole.config.configurator  # noqa: F401 - the modules the fixes replace functions in
    import recbole.data.dataset.dataset  # noqa: F401
    import recbole.model.general_recommender  # noqa: F401
    import recbole.model.knowledge_aware_recommender  # noqa: F401
    import recbole.quick_start  # noqa: F401
    import recbole.trainer.hyper_tuning  # noqa: F401

    for name in ("numpy", "pandas", "scipy", "hyperopt", "setuptools", "ray", "torch", "recbole"):
        print(f"{name:<11} {'.'.join(map(str, installed(name) or ())) or 'not installed'}")
    for fix, where in applied() or [("none", "every library is at a version RecBole 1.2.1 was written for")]:
        print(f"{fix:<20} {where}")
