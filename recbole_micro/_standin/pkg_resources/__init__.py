"""A stand-in for setuptools' ``pkg_resources``, which setuptools 81 removed.

``recbole_micro.compat`` puts the folder above this one on ``sys.path`` (last) and ``PYTHONPATH`` only
when no real ``pkg_resources`` can be imported. Ray <= 2.6.3 -- the newest Ray that RecBole 1.2.1
accepts, imported by ``recbole.quick_start`` and by every Ray worker -- imports ``pkg_resources`` at
start-up; hyperopt 0.2.5 does too (``hyperopt.atpe``). This module implements what those call, from
the standard library's ``importlib.metadata`` / ``importlib.resources`` and the ``packaging`` package:
``get_distribution``, ``require``, ``DistributionNotFound``, ``VersionConflict``, ``packaging``,
``_vendor.packaging.version``, ``resource_string`` / ``resource_filename`` / ``resource_exists``,
and no-op ``declare_namespace`` / ``fixup_namespace_packages`` (namespace packages are native since
Python 3.3). Anything else raises ``AttributeError`` naming this file.

If a real ``pkg_resources`` exists further down the path (a child process of another environment
inherited ``PYTHONPATH``), importing this module loads that one instead.
"""

import importlib.machinery
import importlib.metadata
import importlib.resources
import importlib.util
import os
import sys
import types

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _real_spec():
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    return importlib.machinery.PathFinder.find_spec(__name__, others)


_spec = _real_spec()
if _spec is not None:  # defer to the real one: replace this module in sys.modules, then run it
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[__name__] = _module
    _spec.loader.exec_module(_module)
else:
    import packaging
    import packaging.requirements
    import packaging.version

    STANDIN = True  # lets callers (and tests) tell this module from setuptools' own

    class ResolutionError(Exception):
        """Base of the errors below (as in setuptools)."""

    class DistributionNotFound(ResolutionError):
        """No installed distribution has the requested name."""

    class VersionConflict(ResolutionError):
        """The installed version does not satisfy the requirement."""

    class Distribution:
        """The two attributes callers read: ``project_name`` and ``version`` (plus ``key``)."""

        def __init__(self, name, version):
            self.project_name, self.version, self.key = name, version, name.lower()

        def __repr__(self):
            return f"{self.project_name} {self.version}"

    def get_distribution(requirement):
        """The installed distribution ``requirement`` names (a name or a ``name>=x`` string)."""
        req = packaging.requirements.Requirement(str(requirement))
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            raise DistributionNotFound(f"The '{requirement}' distribution was not found") from None
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            raise VersionConflict(f"{req.name} {version} does not satisfy '{requirement}'")
        return Distribution(req.name, version)

    def require(*requirements):
        """The distributions named (dependencies are not resolved: pip installed them)."""
        return [get_distribution(r) for r in requirements]

    def resource_string(package, resource):
        return importlib.resources.files(package).joinpath(resource).read_bytes()

    def resource_filename(package, resource):
        return str(importlib.resources.files(package).joinpath(resource))

    def resource_exists(package, resource):
        return importlib.resources.files(package).joinpath(resource).exists()

    def declare_namespace(name):
        """No-op: implicit namespace packages need no declaration."""

    def fixup_namespace_packages(path_item, parent=None):
        """No-op: implicit namespace packages need no fix-up."""

    # ``from pkg_resources._vendor.packaging.version import parse`` (Ray) finds these in sys.modules.
    _vendor = types.ModuleType(f"{__name__}._vendor")
    _vendor.packaging = packaging
    sys.modules[_vendor.__name__] = _vendor
    sys.modules[f"{__name__}._vendor.packaging"] = packaging
    sys.modules[f"{__name__}._vendor.packaging.version"] = packaging.version

    def __getattr__(name):
        raise AttributeError(
            f"pkg_resources.{name} is not provided by recbole-micro's stand-in ({__file__}); setuptools >= 81 "
            f"removed pkg_resources: install 'setuptools<81' for code that needs the whole module"
        )
