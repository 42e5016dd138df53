"""``pip install .`` (not only ``-e``) carries every module and data file of the five components."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import REPO

#: Top-level folders and the import package each installs as.
LAYOUT = {"optiinfra": "optiinfra", "exporter": "optiinfra/exporter", "rules": "optiinfra/rules",
          "alertmanager": "optiinfra/alertmanager", "grafana": "optiinfra/grafana", "demo": "optiinfra/demo",
          "orchestrator": "optiinfra/orchestrator"}
DATA_SUFFIXES = (".py", ".json", ".typed")


def _expected() -> set[str]:
    files = set()
    for folder, installed in LAYOUT.items():
        for path in (REPO / folder).rglob("*"):
            rel = path.relative_to(REPO / folder)
            if path.is_file() and path.suffix in DATA_SUFFIXES and "__pycache__" not in rel.parts \
                    and "generated" not in rel.parts and (folder != "optiinfra" or len(rel.parts) == 1):
                files.add(f"{installed}/{rel.as_posix()}")
    return files


def test_wheel_contains_every_module_and_data_file(tmp_path: Path) -> None:
    # Build from a clean copy: an in-tree build would reuse a stale build/ directory.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".venv", "build", ".git", "*.egg-info", "__pycache__", ".typecheck*", ".*_cache"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
         str(source)],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("optiinfra-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_expected() - names)
    assert not missing, f"not installed by `pip install .`: {missing}"
    assert not [n for n in names if n.split("/")[0] in ("exporter", "rules", "alertmanager", "grafana", "demo")]
