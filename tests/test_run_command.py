"""`cxr-gateway run`: NVIDIA's wrapper contract (its own schema), its errors, our extras."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.uid import generate_uid

from dicom_gateway.imaging.conversion import convert_dataset
from models.backend import PINNED_REVISION
from models.prompts import PROMPT_PRESETS
from tests.peers import BIN, sample_file
from tests.random_qwen import ForcedReplies

pytestmark = pytest.mark.integration  # `cxr-gateway run` as a subprocess
# The wrapper's own output schema, unchanged (tests/schemas/README.md says where from).
SCHEMA = json.loads((Path(__file__).parent / "schemas" /
                     "nv_reason_cxr_output_schema.json").read_text())
WRAPPER_FIXTURE = {  # NVIDIA/skills skills/nv-reason-cxr/fixtures/synthetic_cxr_input.json
    "case_id": "synthetic-cxr-smoke",
    "image_path": "generated://synthetic_chest_xray",
    "prompt": "Find abnormalities and support devices.",
    "mock": True,
    "mock_response": "Mock NV-Reason-CXR response for a generated synthetic chest X-ray "
                     "image. No clinical finding is asserted; this response only verifies "
                     "image handling, prompt wiring, JSON output, and evidence-pack gates.",
}


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("MOCK_NV_REASON_CXR", "NV_REASON_CXR_MODEL", "HF_HUB_OFFLINE",
                             "TRANSFORMERS_OFFLINE")}
    full_env.update(env or {})
    return subprocess.run([str(BIN / "cxr-gateway"), "run", *args], capture_output=True,
                          text=True, timeout=300, env=full_env, cwd=cwd)


def wrapper_json(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """Exit 0 and JSON that the wrapper's own schema accepts."""
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    jsonschema.validate(doc, SCHEMA)
    return doc


@pytest.fixture
def png(rg1: Path, tmp_path: Path) -> Path:
    path = tmp_path / "rg1.png"
    path.write_bytes(convert_dataset(dcmread(rg1)).png)
    return path


def test_png_mock_is_the_wrapper_contract(png: Path, tmp_path: Path) -> None:
    doc = wrapper_json(run(str(png), "--mock"))
    assert doc["input"]["image"]["path"] == str(png.resolve())
    assert doc["input"]["image"]["source"] == "file" and doc["input"]["image"]["format"] == "png"
    rt = doc["runtime"]
    assert (rt["mode"], rt["mock"], rt["device"], rt["generated_tokens"]) == (
        "mock", True, "none", 0)
    assert rt["model_revision"] == PINNED_REVISION  # the pin, as the wrapper reports it
    assert "does not assert clinical findings" in doc["output"]["response_text"]
    assert "gateway" not in doc


def test_relative_path_is_resolved(png: Path) -> None:
    doc = wrapper_json(run(png.name, "--mock", cwd=png.parent))
    assert doc["input"]["image"]["path"] == str(png.resolve())


def test_the_wrappers_fixture(tmp_path: Path) -> None:
    fixture = tmp_path / "synthetic_cxr_input.json"
    fixture.write_text(json.dumps(WRAPPER_FIXTURE))
    doc = wrapper_json(run(str(fixture), "--out-dir", str(tmp_path / "out")))
    image = doc["input"]["image"]
    assert image["source"] == "generated_fixture" and image["format"] == "png"
    assert Path(image["path"]) == (tmp_path / "out" / "input_synthetic_chest_xray.png")
    assert doc["output"]["response_text"] == WRAPPER_FIXTURE["mock_response"]
    assert doc["runtime"]["model"] == "nvidia/NV-Reason-CXR-3B"
    extras = json.loads((tmp_path / "out" / "gateway_result.json").read_text())
    assert extras["status"] == "mock" and extras["labels"] == []


@pytest.mark.parametrize("preset", sorted(PROMPT_PRESETS))
def test_each_preset(png: Path, preset: str) -> None:
    doc = wrapper_json(run(str(png), "--mock", "--prompt-preset", preset))
    assert doc["input"]["prompt"] == PROMPT_PRESETS[preset]
    doc = wrapper_json(run(str(png), "--mock", "--prompt-preset", preset, "--prompt", "X?"))
    assert doc["input"]["prompt"] == "X?"


def test_api_backend_mock_keeps_the_contract(png: Path) -> None:
    doc = wrapper_json(run(str(png), "--mock", "--backend", "hf-space-api"))
    assert doc["runtime"]["max_new_tokens"] is None and doc["runtime"]["mode"] == "mock"


def test_png_through_the_local_backend(png: Path, tiny_qwen: Path) -> None:
    doc = wrapper_json(run(str(png), "--model-id", str(tiny_qwen), "--device", "cpu",
                           "--allow-cpu", "--local-files-only", "--max-new-tokens", "12"))
    rt = doc["runtime"]
    assert rt["mode"] == "hf_transformers" and rt["mock"] is False
    assert rt["device"] == "cpu" and rt["torch_dtype"] == "float32"
    assert rt["transformers_version"] == "4.56.1" and rt["local_files_only"] is True
    assert 0 < rt["generated_tokens"] <= 12
    assert rt["truncated_by_max_new_tokens"] == (rt["generated_tokens"] == 12)
    assert rt["model"] == str(tiny_qwen)


def test_details_and_report_with_the_local_backend(png: Path, tiny_qwen_labels: Path) -> None:
    """The forced tiny Qwen answers with labels, so the second turn really generates."""
    forced = ForcedReplies()
    out = run(str(png), "--model-id", str(tiny_qwen_labels), "--device", "cpu",
              "--allow-cpu", "--local-files-only", "--max-new-tokens", "12", "--report",
              "--report-max-new-tokens", "6")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    gw = doc.pop("gateway")
    jsonschema.validate(doc, SCHEMA)  # the rest is still the wrapper's contract
    assert doc["output"]["response_text"] == forced.findings
    assert gw["status"] == "ok" and gw["format_ok"] is True
    assert gw["labels"] == ["Edema", "Pneumothorax"] == list(forced.labels)
    assert "report_skipped" not in gw
    report = gw["report"]
    assert report["response_text"] == forced.report
    assert 0 < report["generated_tokens"] < 6 and report["truncated"] is False
    assert [s["heading"] for s in report["sections"]] == ["EXAMINATION", "FINDINGS",
                                                          "IMPRESSION"]
    assert report["reasoning"] == "Summarise the two findings in the template."


def test_no_report_after_a_random_weight_answer(png: Path, tiny_qwen: Path) -> None:
    out = run(str(png), "--model-id", str(tiny_qwen), "--device", "cpu", "--allow-cpu",
              "--local-files-only", "--max-new-tokens", "12", "--report",
              "--report-max-new-tokens", "6")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    gw = doc.pop("gateway")
    jsonschema.validate(doc, SCHEMA)
    # random weights say nothing sensible: the status names that, and no report is asked
    assert gw["status"] in ("truncated", "unparseable", "no_labels", "refused")
    assert gw["labels"] == [] and gw["report"] is None
    assert gw["report_skipped"].startswith(f"the first answer was {gw['status']}")


def test_dicom_is_converted_and_described_as_its_png(rg1: Path, tmp_path: Path) -> None:
    out = run(str(rg1), "--mock", "--details", "--out-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    gw = doc.pop("gateway")
    jsonschema.validate(doc, SCHEMA)
    image = doc["input"]["image"]
    assert image["format"] == "png" and Path(image["path"]).parent == tmp_path
    assert (image["width"], image["height"]) == Image.open(image["path"]).size
    assert gw["source_dicom"]["path"] == str(rg1) and gw["source_dicom"]["admission"] == \
        "admitted"
    assert gw["source_dicom"]["conversion"] == "mimic-v1"


def _lateral(rg1: Path, out: Path) -> Path:
    ds = dcmread(rg1)
    ds.ViewPosition = "LL"
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(out, enforce_file_format=True)
    return out


@pytest.mark.parametrize(("which", "reason"), [
    ("RG3_UNCR.dcm", "not chest"), ("lateral", "lateral view"), ("CT_small.dcm",
                                                                  "not a radiograph")])
def test_dicom_that_admission_refuses(rg1: Path, tmp_path: Path, which: str,
                                      reason: str) -> None:
    path = _lateral(rg1, tmp_path / "lat.dcm") if which == "lateral" else sample_file(which)
    out = run(str(path), "--mock")
    assert out.returncode == 2 and out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: ") and reason in line and "--force" in line
    if which == "lateral":
        forced = run(str(path), "--mock", "--force", "--details")
        assert forced.returncode == 0, forced.stderr
        assert json.loads(forced.stdout)["gateway"]["source_dicom"]["forced"] is True


def test_noise_and_colour_get_a_warning(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise.png"
    Image.fromarray((rng.random((200, 200)) * 255).astype("uint8")).save(noise)
    out = run(str(noise), "--mock")
    assert out.returncode == 0 and "warning: the image looks like noise" in out.stderr
    colour = tmp_path / "colour.png"
    Image.new("RGB", (200, 200), (200, 30, 30)).save(colour)
    assert "warning: the image is in colour" in run(str(colour), "--mock").stderr


@pytest.mark.parametrize(("args", "message"), [
    # the wrapper's own words for the same mistakes
    (["__MISSING__", "--mock"], "input not found"),
    (["__TXT__", "--mock"], "unsupported image format"),
    (["__FIXTURE__", "--mock"], "--out-dir is required"),
    (["__FIXTURE__", "--mock", "--backend", "hf-space-api", "--local-files-only"],
     "--local-files-only is only valid with --backend local"),
    (["__PNG__", "--mock", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    ([], "image_or_fixture is required unless --check-setup is used"),
    (["__BADJSON__", "--mock"], "fixture is not valid JSON"),
    (["__PNG__", "--device", "cpu"], "Pass --allow-cpu"),
    # ours
    (["__PNG__", "--backend", "openai"], "server URL"),
])
def test_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    png = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(png)
    fixture = tmp_path / "f.json"
    fixture.write_text(json.dumps({"image_path": "generated://synthetic_cxr"}))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    subs = {"__TXT__": str(txt), "__PNG__": str(png), "__FIXTURE__": str(fixture),
            "__MISSING__": str(tmp_path / "missing.png"), "__BADJSON__": str(bad)}
    out = run(*[subs.get(a, a) for a in args], "--model-id", str(tmp_path / "no-model"))
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
