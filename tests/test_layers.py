"""The import contract (pyproject.toml [tool.importlinter], docs/architecture.md): it holds on
the tree, and a deliberate violation breaks it by name, so `scripts/test` would fail."""

from __future__ import annotations

import ast
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
    "rooms": "worker rooms: cli -> service -> ops|research -> readers -> pipeline|ingest -> "
             "runtime -> store -> settings -> logs",
    "gateway rooms": "dicom_gateway rooms: listen|routing|imaging|documents -> transfer -> "
                     "spool -> uids",
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
    # a room importing a sibling, and a lower room importing a higher one
    ("dicom_gateway/routing/_layer_probe.py", "from dicom_gateway.documents import marks\n",
     "gateway rooms"),
    ("dicom_gateway/transfer/_layer_probe.py", "from dicom_gateway.listen import listener\n",
     "gateway rooms"),
    ("dicom_gateway/uids.py", "from dicom_gateway import spool\n", "gateway rooms"),
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


# -- the rooms' shape (docs/architecture.md: the same bounds for every room) -------------

MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 60


def _product_modules() -> list[Path]:
    return sorted(p for package in PRODUCT for p in (ROOT / package).rglob("*.py")
                  if "migrations" not in p.parts)


def test_no_module_or_function_is_over_its_bound() -> None:
    over = []
    for path in _product_modules():
        source = path.read_text()
        name = path.relative_to(ROOT)
        if len(source.splitlines()) > MAX_MODULE_LINES:
            over.append(f"{name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    over.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    assert not over, over


def test_the_gateway_rooms_init_files_import_nothing() -> None:
    """So that settings can import a room's plain-value module (the listener's limits, the
    conversions' names) without loading pydicom, numpy or PIL; and each says what lives
    there and what it may import."""
    inits = sorted((ROOT / "dicom_gateway").rglob("__init__.py"))
    assert len(inits) >= 7, inits
    for path in inits:
        tree = ast.parse(path.read_text())
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
                   and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
        assert not imports, f"{path.relative_to(ROOT)} imports {ast.dump(imports[0])}"
        doc = ast.get_docstring(tree) or ""
        assert doc and (path.parent.name == "dicom_gateway" or "import" in doc), path
