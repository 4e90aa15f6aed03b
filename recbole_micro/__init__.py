"""recbole-micro: MICRO (Zhang et al., TKDE 2022) as a RecBole 1.2.1 plugin.

Importing the package registers the fixes that let RecBole 1.2.1 run on numpy 2, pandas 3,
scipy >= 1.13, hyperopt >= 0.2.7 and setuptools >= 81 (``recbole_micro.compat``); on older versions
nothing is changed.
"""

from recbole_micro import compat as _compat

_compat.apply()
