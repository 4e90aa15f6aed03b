"""recbole-micro: the MICRO multimodal recommender (Zhang et al., TKDE 2022) as a RecBole plugin."""

from setuptools import find_packages, setup

# Versions tested with RecBole 1.2.1 on Python 3.11 (see README, "Install"): both ends of each range,
# the pinned set (numpy 1.26, pandas 2.3, scipy 1.12, hyperopt 0.2.5, setuptools 80) and the newest
# releases (numpy 2.4, pandas 3.1, scipy 1.17, hyperopt 0.3, setuptools 84). RecBole breaks on the
# newer ones; recbole_micro/compat.py fixes each break where RecBole makes the call, only on the
# versions that need it. Upper bounds are the next major releases, which nobody has tested yet.
# * setuptools: no requirement; when a setuptools >= 81 lacks pkg_resources (which ray <= 2.6.3 imports),
#   compat puts a stand-in on the path (it needs ``packaging``).
# * torch >= 2.6 (weights_only loading, handled by recbole_micro/checkpoint.py), no upper bound so that an
#   environment with its own (CUDA) torch keeps it. In a fresh venv install torch first
#   and pinned (``pip install torch==2.13.0``): an open range would pull a multi-GB CUDA build.
# * recbole: RecBole 1.2.1 requires ray<=2.6.3, which has no wheels for Python 3.12+ (pip's resolver stops
#   there). On 3.12+ RecBole is installed without its dependencies (``pip install --no-deps recbole==1.2.1``,
#   README "Install") and RECBOLE_RUNTIME declares what it needs at run time: its own requirements, less
#   ray (optional: the ``ray`` extra) and the ones above. ``pip check`` then names only ray (README).
RECBOLE_RUNTIME = ["tqdm>=4.48.2", "colorlog==4.7.2", "colorama==0.4.4", "scikit-learn>=0.23.2", "pyyaml>=5.1.0",
                   "tensorboard>=2.5.0", "thop>=0.1.1.post2207130030", "tabulate>=0.8.10", "plotly>=4.0.0",
                   "texttable>=0.9.0", "psutil>=5.9.0"]
NEW_PYTHON = '; python_version >= "3.12"'
INSTALL_REQUIRES = [
    "torch>=2.6",
    'recbole==1.2.1; python_version < "3.12"',
    "numpy>=1.24,<3",
    "pandas>=2.0,<4",
    "scipy>=1.10,<2",
    "hyperopt>=0.2.5,<0.4",
    "packaging>=20",
    "matplotlib>=3.7",
] + [requirement + NEW_PYTHON for requirement in RECBOLE_RUNTIME]
# Ray Tune for --tool ray: RecBole's own Ray on 3.9-3.11 (recbole_micro/compat.py fixes it on numpy 2),
# the newest on 3.12+ (recbole_micro/raytune.py speaks both reporting APIs).
RAY = ['ray[tune]==2.6.3; python_version < "3.12"', 'ray[tune]>=2.60; python_version >= "3.12"']
# The encoders of `python -m recbole_micro.features` (README, "From raw text and images to features"). Neither
# asks for a torch beyond >= 1.11, so the installed torch is kept (pip install --dry-run lists no torch).
# torchvision and timm are used when importable, not required: their wheels must match the local torch build.
FEATURES = ["sentence-transformers>=2.3", "pillow>=9"]

setup(
    name="recbole-micro",
    version="0.1.0",
    description="MICRO (latent structure mining with contrastive modality fusion) as a RecBole plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["recbole_micro", "recbole_micro.*"]) + ["recbole_micro.properties"],
    package_dir={"recbole_micro.properties": "properties"},
    package_data={"recbole_micro.properties": ["*.yaml", "model/*.yaml", "dataset/*.yaml", "hyper/*.hyper"],
                  "recbole_micro": ["_standin/pkg_resources/*.py"]},  # a path entry, not a subpackage
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=7"], "ray": RAY, "features": FEATURES},
    entry_points={"console_scripts": ["recbole-micro=recbole_micro.cli:main"]},
)
