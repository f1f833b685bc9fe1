"""`cxr-gateway run`: the wrapper's flags, JSON validated against the schema kept here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydicom import dcmread

from dicom_gateway.conversion import convert_dataset
from tests.peers import BIN

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "run_output.schema.json").read_text())


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {k: v for k, v in os.environ.items()
                if k not in ("MOCK_NV_REASON_CXR", "NV_REASON_CXR_MODEL")}
    full_env.update(env or {})
    return subprocess.run([str(BIN / "cxr-gateway"), "run", *args], capture_output=True,
                          text=True, timeout=300, env=full_env)


def ok_json(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    jsonschema.validate(doc, SCHEMA)
    return doc


def test_dicom_through_the_gateway_conversion_mock(rg1: Path) -> None:
    doc = ok_json(run(str(rg1), "--mock", "--report"))
    assert doc["input"]["image"]["format"] == "dicom"
    assert doc["conversion"]["name"] == "mimic-v1"
    assert doc["runtime"]["mode"] == "mock" and doc["runtime"]["mock"] is True
    assert "MOCK" in doc["output"]["response_text"]
    assert doc["parsed"]["status"] == "ok" and doc["parsed"]["labels"]
    assert doc["report"]["sections"]["impression"]


def test_png_through_the_local_backend(rg1: Path, tiny_qwen: Path, tmp_path: Path) -> None:
    png = tmp_path / "rg1.png"
    png.write_bytes(convert_dataset(dcmread(rg1)).png)
    doc = ok_json(run(str(png), "--model-id", str(tiny_qwen), "--device", "cpu", "--allow-cpu",
                      "--local-files-only", "--max-new-tokens", "12", "--report",
                      "--report-max-new-tokens", "6"))
    rt = doc["runtime"]
    assert rt["mode"] == "hf_transformers" and rt["mock"] is False
    assert rt["device"] == "cpu" and rt["torch_dtype"] == "float32"
    assert rt["transformers_version"] == "4.56.1" and rt["local_files_only"] is True
    assert 0 < rt["generated_tokens"] <= 12
    assert rt["truncated_by_max_new_tokens"] == (rt["generated_tokens"] == 12)
    assert doc["input"]["image"] | {"path": ""} == doc["input"]["image"] | {
        "path": "", "format": "png", "source": "file"}
    assert doc["report"]["generated_tokens"] <= 6


def test_generated_fixture_and_env_mock(tmp_path: Path) -> None:
    fixture = tmp_path / "synthetic_cxr_input.json"
    fixture.write_text(json.dumps({"case_id": "synthetic-1",
                                   "image_path": "generated://synthetic_chest_xray",
                                   "prompt": "Examine the chest X-ray.",
                                   "mock_response": "Mock NV-Reason-CXR response."}))
    doc = ok_json(run(str(fixture), "--out-dir", str(tmp_path / "out"),
                      env={"MOCK_NV_REASON_CXR": "1"}))
    assert doc["input"]["image"]["source"] == "generated_fixture"
    assert (doc["input"]["image"]["width"], doc["input"]["image"]["height"]) == (96, 96)
    assert doc["input"]["prompt"] == "Examine the chest X-ray."
    assert doc["output"]["response_text"] == "Mock NV-Reason-CXR response."
    assert doc["parsed"]["status"] == "unparseable" and doc["parsed"]["labels"] == []


def test_prompt_beats_preset(rg1: Path) -> None:
    doc = ok_json(run(str(rg1), "--mock", "--prompt-preset", "comprehensive"))
    assert doc["input"]["prompt"].startswith("Provide a comprehensive image analysis")
    doc = ok_json(run(str(rg1), "--mock", "--prompt-preset", "comprehensive", "--prompt", "X?"))
    assert doc["input"]["prompt"] == "X?"


@pytest.mark.parametrize(("args", "message"), [
    (["/nonexistent.png", "--mock"], "cannot read"),
    (["__TXT__", "--mock"], "not a PNG, JPEG or DICOM"),
    (["__PNG__"], "allow-cpu"),
    (["__FIXTURE__", "--mock"], "--out-dir"),
    (["__PNG__", "--backend", "hf-space-api", "--local-files-only"], "cannot be used"),
    (["__PNG__", "--backend", "openai"], "server URL"),
])
def test_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    png = tmp_path / "x.png"
    png.write_bytes(bytes.fromhex("89504e470d0a1a0a") + b"garbage")
    fixture = tmp_path / "f.json"
    fixture.write_text(json.dumps({"image_path": "generated://synthetic_cxr"}))
    subs = {"__TXT__": str(txt), "__PNG__": str(png), "__FIXTURE__": str(fixture)}
    if args[0] == "__PNG__":
        from PIL import Image

        Image.new("RGB", (64, 64)).save(png)
    out = run(*[subs.get(a, a) for a in args], "--device", "cpu", "--model-id",
              str(tmp_path / "no-model"))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert out.stdout == ""


def test_check_setup_reports_environment(tiny_qwen: Path) -> None:
    out = run("--check-setup", "--model-id", str(tiny_qwen))
    assert out.returncode == 0, out.stderr
    setup = json.loads(out.stdout)["setup"]
    assert setup["dependencies"]["transformers"]["version"] == "4.56.1"
    assert setup["model_cache"]["has_safetensors"] is True
    assert setup["recommendation"] in (
        "use_cuda_or_pass_explicit_cpu_flags_for_slow_testing", "ready_for_live_cuda_inference")
