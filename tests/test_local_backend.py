"""The local Transformers backend on a tiny random-weight Qwen2.5-VL, loaded from disk."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.backend import (
    DEFAULT_MODEL_ID,
    PINNED_REVISION,
    BackendError,
    Generation,
    ModelRequest,
    Turn,
)
from models.local import LocalBackend, LocalOptions, generated_lengths
from models.prompts import DEFAULT_PROMPT, REPORT_PROMPT
from models.registry import BackendConfig, get_backend
from models.study import findings_request, report_request, run_studies
from tests.random_qwen import ForcedReplies


def png(seed: int, shape: tuple[int, int]) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random(shape) * 255).astype("uint8")).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


IMAGES = [png(1, (300, 280)), png(2, (476, 400)), png(3, (200, 260)), png(4, (128, 700))]


@pytest.fixture(scope="module")
def backend(tiny_qwen: Path) -> LocalBackend:
    b = get_backend(BackendConfig(name="local", model_id=str(tiny_qwen), device="cpu",
                                  allow_cpu=True, local_files_only=True))
    assert isinstance(b, LocalBackend)
    return b


def test_loaded_through_from_pretrained_with_the_training_budget(backend: LocalBackend) -> None:
    ip = backend.processor.image_processor
    assert type(backend.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(ip).__name__ == "Qwen2VLImageProcessorFast"  # use_fast=True
    assert (ip.min_pixels, ip.max_pixels) == (128 * 128, 476 * 476)
    assert backend.processor.tokenizer.padding_side == "left"
    assert backend.info.settings["torch_dtype"] == "float32"
    assert backend.info.name == "local" and not backend.info.is_mock


def test_batched_greedy_equals_one_at_a_time(backend: LocalBackend) -> None:
    reqs = [findings_request(img, max_new_tokens=32) for img in IMAGES]
    batched = backend.generate(reqs)
    single = [backend.generate([r])[0] for r in reqs]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.generated_tokens for g in batched] == [g.generated_tokens for g in single]
    assert len({g.text for g in single}) > 1  # outputs depend on the image
    second = [report_request(r, g.text, 16) for r, g in zip(reqs, single, strict=True)]
    assert [g.text for g in backend.generate(second)] == \
        [backend.generate([r])[0].text for r in second]


def test_two_turn_conversation_is_built_as_specified(backend: LocalBackend) -> None:
    first = findings_request(IMAGES[0])
    reply = "<think> r </think>\n<answer> Edema </answer>"
    second = report_request(first, reply)
    assert second.turns == (Turn("user", DEFAULT_PROMPT), Turn("assistant", reply),
                            Turn("user", REPORT_PROMPT))
    assert second.image_png == first.image_png
    text = backend.processor.apply_chat_template(backend.messages(second),
                                                 add_generation_prompt=True)
    assert text.count("<|image_pad|>") == 1
    user1 = text.index("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
                       + DEFAULT_PROMPT)
    asst = text.index("<|im_start|>assistant\n" + reply + "<|im_end|>")
    user2 = text.index("<|im_start|>user\n" + REPORT_PROMPT + "<|im_end|>")
    assert user1 < asst < user2
    assert text.endswith("<|im_start|>assistant\n")


class ScriptedFirstTurn:
    """The real backend, except that the findings turn answers as a trained model would
    (random weights never close an <answer>), so the report turn runs on the real model."""

    def __init__(self, real: LocalBackend) -> None:
        self.real, self.info, self.calls = real, real.info, []  # type: ignore[var-annotated]

    def generate(self, requests):  # type: ignore[no-untyped-def]
        self.calls.append([r.max_new_tokens for r in requests])
        if all(len(r.turns) == 1 for r in requests):
            return [Generation("<think> r </think>\n<answer> Edema </answer>", 9)
                    for _ in requests]
        return self.real.generate(requests)


def test_report_turn_runs_after_labels_with_its_own_limit(backend: LocalBackend) -> None:
    scripted = ScriptedFirstTurn(backend)
    (result,) = run_studies(scripted, [IMAGES[1]], findings_tokens=8, report_tokens=12)
    assert result.parsed.status == "ok" and result.labels == ("Edema",)
    assert scripted.calls == [[8], [12]]
    assert result.report is not None and result.report.generated_tokens is not None
    assert 0 < result.report.generated_tokens <= 12
    assert result.parsed_report is not None
    assert result.parsed_report.truncated == (result.report.generated_tokens == 12)


def test_no_report_turn_after_an_answer_without_labels(backend: LocalBackend) -> None:
    (result,) = run_studies(backend, [IMAGES[1]], findings_tokens=8, report_tokens=12)
    assert result.findings.generated_tokens is not None
    assert result.findings.generated_tokens <= 8
    assert result.parsed.status != "ok"  # random weights never close <answer>
    assert result.report is None and result.parsed_report is None


def test_cpu_needs_explicit_opt_in(tiny_qwen: Path) -> None:
    with pytest.raises(BackendError, match="allow-cpu"):
        LocalBackend(LocalOptions(model_id=str(tiny_qwen), device="cpu",
                                  local_files_only=True))


@pytest.mark.integration  # it imports transformers and torch (5 s), as loading does
def test_missing_model_with_local_files_only_is_a_clear_permanent_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError) as err:
        LocalBackend(LocalOptions(model_id=str(tmp_path / "absent"), device="cpu",
                                  allow_cpu=True, local_files_only=True))
    assert err.value.permanent


def test_forced_checkpoint_runs_both_turns_batched(tiny_qwen_labels: Path) -> None:
    forced = ForcedReplies()
    b = LocalBackend(LocalOptions(model_id=str(tiny_qwen_labels), device="cpu",
                                  allow_cpu=True, local_files_only=True))
    results = run_studies(b, IMAGES, findings_tokens=12, report_tokens=16)
    assert [r.status for r in results] == ["ok"] * len(IMAGES)
    assert {r.labels for r in results} == {("Edema", "Pneumothorax")}
    assert {r.findings.text for r in results} == {forced.findings}
    assert {r.report.text for r in results if r.report} == {forced.report}
    # the reply then <|im_end|>: two generated tokens per turn, far below either limit
    assert [(r.findings.generated_tokens, r.report.generated_tokens if r.report else None)
            for r in results] == [(2, 2)] * len(IMAGES)
    sections = {tuple(s.heading for s in r.parsed_report.sections)
                for r in results if r.parsed_report}
    assert sections == {("EXAMINATION", "FINDINGS", "IMPRESSION")}


def _hub_snapshot(cache: Path, repo_id: str, commit: str, checkpoint: Path) -> None:
    """A checkpoint laid out in a Hugging Face hub cache as a download would leave it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(checkpoint, repo / "snapshots" / commit)


def test_default_model_revision_is_pinned(tmp_path: Path, tiny_qwen: Path,
                                          tiny_qwen_labels: Path) -> None:
    assert LocalOptions().effective_revision == "056bd0383b35226554da9dc5866e095df174ae19"
    assert LocalOptions(model_id="/some/dir").effective_revision is None
    # Loading the default id offline must open the pinned snapshot, not what "main" names:
    # the pinned one is the forced checkpoint, "main" a different (random) one.
    cache, main = tmp_path / "hub", "1" * 40
    _hub_snapshot(cache, DEFAULT_MODEL_ID, PINNED_REVISION, tiny_qwen_labels)
    _hub_snapshot(cache, DEFAULT_MODEL_ID, main, tiny_qwen)
    (cache / f"models--{DEFAULT_MODEL_ID.replace('/', '--')}" / "refs").mkdir()
    (cache / f"models--{DEFAULT_MODEL_ID.replace('/', '--')}" / "refs" / "main"
     ).write_text(main)
    script = (
        "import json, sys\n"
        "from models.local import LocalBackend, LocalOptions\n"
        "from models.study import findings_request\n"
        "png = open(sys.argv[1], 'rb').read()\n"
        "out = {}\n"
        "for name, rev in (('default', None), ('main', 'main')):\n"
        "    b = LocalBackend(LocalOptions(revision=rev, device='cpu', allow_cpu=True,\n"
        "                                  local_files_only=True))\n"
        "    out[name] = [b.info.model_id, b.info.model_revision,\n"
        "                 b.generate([findings_request(png, max_new_tokens=12)])[0].text]\n"
        "print(json.dumps(out))\n")
    image = tmp_path / "in.png"
    image.write_bytes(IMAGES[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", script, str(image)], capture_output=True,
                          text=True, timeout=600, env=env, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["default"] == [DEFAULT_MODEL_ID, PINNED_REVISION, ForcedReplies().findings]
    assert out["main"][:2] == [DEFAULT_MODEL_ID, "main"]
    assert out["main"][2] != ForcedReplies().findings  # the other snapshot really differs


@pytest.mark.integration  # torch (3 s of imports)
def test_generated_lengths_stop_at_eos_and_ignore_padding() -> None:
    import torch

    rows = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [5, 0, 0, 0, 0]])
    assert generated_lengths(rows, {2}, 0) == [3, 5, 1]


def test_requests_with_different_limits_keep_order(backend: LocalBackend) -> None:
    reqs = [ModelRequest(IMAGES[0], (Turn("user", DEFAULT_PROMPT),), 4),
            ModelRequest(IMAGES[1], (Turn("user", DEFAULT_PROMPT),), 6)]
    out = backend.generate(reqs)
    assert out[0].text == backend.generate([reqs[0]])[0].text
    assert out[1].text == backend.generate([reqs[1]])[0].text
