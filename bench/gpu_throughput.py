"""GPU throughput: the wrapper's batch-1 way against our batched local backend, same run.

Builds the full Qwen2.5-VL-3B architecture (NV-Reason-CXR-3B's shape) with random bf16
weights directly on the GPU (no download), feeds RG1 converted at the 476*476 budget,
forces exactly ``--new-tokens`` generated tokens per study, and reports studies/hour:

* batch 1 "the wrapper's way": one processor call and one ``generate`` per study;
* our batched path (``models.local.LocalBackend``, left padding) at each batch size.

Ends with ``RESULT gpu_batched_over_batch1=<best batched / batch 1>`` (target >= 10).
Without CUDA it prints ``RESULT skipped=no_cuda`` and exits 0.  ``--size tiny
--device cpu`` runs the same code on a tiny model as a smoke test (numbers meaningless).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# run as ``python bench/gpu_throughput.py`` from anywhere: the repository root holds the
# test-fixture builder (tests/random_qwen.py), which the product package does not ship
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", default="3b", choices=["3b", "tiny"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--new-tokens", type=int, default=700)
    ap.add_argument("--batch1-studies", type=int, default=3)
    ap.add_argument("--batches", default="8,16,32,64")
    ap.add_argument("--rounds", type=int, default=1, help="batches timed per batch size")
    args = ap.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device visible")
        print("RESULT skipped=no_cuda")
        return 0

    from PIL import Image
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from dicom_gateway.imaging.conversion import convert_dataset
    from models.local import LocalBackend, LocalOptions
    from models.study import findings_request
    from tests.random_qwen import build_checkpoint

    dtype = torch.bfloat16 if args.device.startswith("cuda") else torch.float32
    folder = Path(tempfile.mkdtemp(prefix="qwen-bench-"))
    build_checkpoint(folder, size=args.size, save_weights=False)
    config = Qwen2_5_VLConfig.from_pretrained(folder)
    torch.manual_seed(0)
    with torch.device(args.device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.eval()
    processor = AutoProcessor.from_pretrained(folder, use_fast=True, padding_side="left",
                                              min_pixels=128 * 128, max_pixels=476 * 476)
    png = convert_dataset(dcmread(get_testdata_file("RG1_UNCR.dcm"))).png
    options = LocalOptions(model_id=f"random-{args.size}", device=args.device, allow_cpu=True,
                           torch_dtype="bfloat16" if dtype == torch.bfloat16 else "float32",
                           min_new_tokens=args.new_tokens)
    backend = LocalBackend(options, model=model, processor=processor)
    n_params = sum(p.numel() for p in model.parameters()) / 1e9
    print(f"model: random Qwen2.5-VL {args.size} ({n_params:.2f} B params, {dtype}) on "
          f"{args.device}; {args.new_tokens} new tokens per study")

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    # batch 1, the wrapper's way
    import io

    image = Image.open(io.BytesIO(png)).convert("RGB")
    messages = [{"role": "user", "content": [
        {"type": "image"}, {"type": "text", "text": "Find abnormalities and support devices."}]}]

    def wrapper_once() -> int:
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(text=text, images=[image], return_tensors="pt").to(args.device)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=args.new_tokens,
                                 min_new_tokens=args.new_tokens, do_sample=False)
        processor.batch_decode(out[:, inputs.input_ids.shape[1]:], skip_special_tokens=True)
        return int(out.shape[1] - inputs.input_ids.shape[1])

    wrapper_once()  # warm-up
    sync()
    t = time.perf_counter()
    for _ in range(args.batch1_studies):
        assert wrapper_once() == args.new_tokens
    sync()
    batch1 = args.batch1_studies / (time.perf_counter() - t) * 3600
    print(f"  batch 1 (wrapper's way)   {batch1:10.1f} studies/h")

    best = 0.0
    for size in (int(b) for b in args.batches.split(",")):
        reqs = [findings_request(png, max_new_tokens=args.new_tokens)] * size
        try:
            backend.generate(reqs[:2])  # warm-up at a small size
            sync()
            t = time.perf_counter()
            for _ in range(args.rounds):
                gens = backend.generate(reqs)
                assert all(g.generated_tokens == args.new_tokens for g in gens)
            sync()
        except torch.OutOfMemoryError:
            print(f"  batched {size:3d}                out of memory")
            break
        rate = size * args.rounds / (time.perf_counter() - t) * 3600
        best = max(best, rate)
        peak = (torch.cuda.max_memory_allocated() / 2**30) if args.device.startswith("cuda") \
            else 0.0
        print(f"  batched {size:3d}               {rate:10.1f} studies/h "
              f"({rate / batch1:5.2f}x, peak {peak:.1f} GiB)")
    print("  engine backend (vLLM): not installed; not measured")
    print(f"RESULT gpu_batched_over_batch1={best / batch1:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
