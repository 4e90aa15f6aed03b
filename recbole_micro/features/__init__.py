"""Raw item text and images → feature atoms ``<out>/<name>/<name>.<modality>`` (``python -m recbole_micro.features``).

``store`` (batches, resume, atomic output; shared), ``text`` (sentence-transformers), ``image`` (CNN
backbones); the encoders' libraries are the optional extra ``pip install -e ".[features]"``.
"""

from recbole_micro.features.store import FeatureBuildError, build_atom

__all__ = ["FeatureBuildError", "build_atom"]
