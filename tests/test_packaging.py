"""The package installs with its yaml defaults, found without depending on the current directory."""

import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO


def test_wheel_ships_every_properties_file(tmp_path):
    """A normal (non-editable) install gets every yaml/hyper file of ``properties/``."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True,
    )
    wheel = next(tmp_path.glob("recbole_micro-*.whl"))
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("recbole_micro/properties/")}
    expected = {
        "recbole_micro/properties/" + str(p.relative_to(REPO / "properties"))
        for p in (REPO / "properties").rglob("*") if p.suffix in (".yaml", ".hyper")
    }
    assert expected and expected <= shipped


def test_properties_found_from_any_directory(tmp_path):
    code = (
        "import os, recbole_micro.utils as u;"
        "print(os.path.isfile(os.path.join(u.PROPERTIES_DIR, 'model', 'MICRO.yaml')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "True"
    assert Path(tmp_path).resolve() != REPO
