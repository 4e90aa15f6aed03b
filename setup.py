"""recbole-micro: the MICRO multimodal recommender (Zhang et al., TKDE 2022) as a RecBole plugin."""

from setuptools import find_packages, setup

# Versions measured to work together with RecBole 1.2.1 on Python 3.11 (see README, "Install"):
# * numpy < 2: RecBole uses removed aliases, and checkpoints pickle numpy 1.x scalars.
# * pandas < 3: pandas 3's copy-on-write turns RecBole's ``fillna(inplace=True)`` into a no-op.
# * scipy < 1.13: LightGCN's graph code calls ``dok_matrix._update``, removed in 1.13.
# * hyperopt 0.2.5: 0.2.7 changed the exhaustive-search API RecBole's HyperTuning uses; 0.2.6 is untested.
# * setuptools < 81: ray and hyperopt import ``pkg_resources``.
# * torch >= 2.6 (weights_only loading): handled by recbole_micro/checkpoint.py. Install torch first
#   and pinned (``pip install torch==2.13.0``): an open range would pull a multi-GB CUDA build.
INSTALL_REQUIRES = [
    "torch>=2.6,<2.14",
    "recbole==1.2.1",
    "numpy>=1.24,<2",
    "pandas>=2.0,<3",
    "scipy>=1.10,<1.13",
    "hyperopt==0.2.5",
    "setuptools<81",
    "matplotlib>=3.7",
]

setup(
    name="recbole-micro",
    version="0.1.0",
    description="MICRO (latent structure mining with contrastive modality fusion) as a RecBole plugin",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["recbole_micro", "recbole_micro.*"]) + ["recbole_micro.properties"],
    package_dir={"recbole_micro.properties": "properties"},
    package_data={"recbole_micro.properties": ["*.yaml", "model/*.yaml", "dataset/*.yaml", "hyper/*.hyper"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": ["pytest>=7"]},
    entry_points={"console_scripts": ["recbole-micro=recbole_micro.cli:main"]},
)
