"""The import contract (pyproject.toml [tool.importlinter], docs/architecture.md): it holds on
the tree, and a deliberate violation breaks it by name, so `scripts/test` would fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from importlinter import configuration
from importlinter.application import use_cases

from tests.peers import ROOT

PRODUCT = ("worker", "dicom_gateway", "models")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

CONTRACTS = {
    "products": "products: worker -> dicom_gateway -> models",
    "models": "models imports no DICOM library",
    "dicom_gateway": "dicom_gateway imports no Celery, kombu, SQLAlchemy or Alembic",
    "settings": "settings load no DICOM library",
    "rooms": "worker rooms: cli -> service -> ops|research -> pipeline|ingest -> runtime -> "
             "store -> settings -> logs",
}


def test_the_tree_keeps_every_contract(capsys: pytest.CaptureFixture[str]) -> None:
    configuration.configure()
    kept = use_cases.lint_imports(config_filename=str(ROOT / "pyproject.toml"),
                                  cache_dir=None, no_logo=True)
    report = capsys.readouterr().out
    assert kept, report
    for name in CONTRACTS.values():
        # the report wraps long names; compare without line breaks
        assert f"{name} KEPT" in " ".join(report.split()), report


# (where the throwaway module goes, what it imports, the contract it must break)
VIOLATIONS = [
    ("models/_layer_probe.py", "import pydicom\n", "models"),
    ("models/_layer_probe.py", "from worker import logs\n", "products"),
    ("dicom_gateway/_layer_probe.py", "import sqlalchemy\n", "dicom_gateway"),
    ("worker/store/_layer_probe.py", "from worker.pipeline import tasks\n", "rooms"),
    ("worker/settings/_layer_probe.py", "import pynetdicom\n", "settings"),
]


@pytest.mark.integration  # runs lint-imports as a subprocess
@pytest.mark.parametrize(("where", "source", "contract"), VIOLATIONS,
                         ids=[c for _, _, c in VIOLATIONS])
def test_a_deliberate_violation_breaks_its_contract(
        tmp_path: Path, where: str, source: str, contract: str) -> None:
    for package in PRODUCT:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / where).write_text(f'"""A deliberate violation (tests/test_layers.py)."""\n'
                                  f"{source}")
    out = subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache"], cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True, text=True, timeout=120)
    report = " ".join(out.stdout.split())
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"Contracts: {len(CONTRACTS) - 1} kept, 1 broken." in report, out.stdout
    assert f"{CONTRACTS[contract]} BROKEN" in report, out.stdout
    probe = where.removesuffix(".py").replace("/", ".")
    assert probe in report, out.stdout
