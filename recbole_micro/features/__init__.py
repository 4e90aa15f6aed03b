"""Raw item text and images → feature atoms ``<out>/<name>/<name>.<modality>`` (``python -m recbole_micro.features``).

``store`` (batches, resume, atomic output; shared by both encoders), ``text`` (sentence-transformers),
``image`` (CNN backbones chosen by name), ``efficientnet_lite`` (the built-in pure-torch backbone). The
encoders' libraries are the optional extra ``pip install -e ".[features]"``.
"""

from recbole_micro.features.store import FeatureBuildError, build_atom

__all__ = ["FeatureBuildError", "build_atom"]
