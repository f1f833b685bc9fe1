"""The demo's first run on a fresh copy of the repository installs only what it needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.peers import ROOT

pytestmark = pytest.mark.integration


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.timeout(900)
def test_scripts_demo_on_a_fresh_copy_installs_no_torch(tmp_path: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    copy = tmp_path / "repo"
    for name in files:
        src = ROOT / name
        if src.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, copy / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CXR_", "VIRTUAL_ENV"))}
    env["PYTHON"] = sys.executable if not sys.prefix.endswith(".venv") else sys.base_prefix \
        + "/bin/python3"
    start = time.monotonic()
    out = subprocess.run([str(copy / "scripts" / "demo")], cwd=copy, env=env,
                         capture_output=True, text=True, timeout=880)
    took = time.monotonic() - start
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "done" in out.stdout and "SR:" in out.stdout
    noise = [line for line in (out.stdout + out.stderr).splitlines()
             if "Deprecat" in line or "project.license" in line]
    assert noise == [], noise  # the install a newcomer watches is quiet
    venv = copy / ".venv"
    site = next(venv.glob("lib/python3*/site-packages"))
    heavy = [name for name in ("torch", "torchvision", "transformers", "nvidia", "triton")
             if (site / name).exists()]
    assert heavy == [], heavy
    size = tree_size(venv)
    print(f"\nscripts/demo on a fresh copy: {took:.0f} s, venv {size / 2**20:.0f} MiB")
    assert size < 600 * 2**20
