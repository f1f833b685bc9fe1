"""Random-weight Qwen2.5-VL checkpoints, built locally, for tests and benchmarks.

No weights can be downloaded where this project is built and tested, so the real
loading and generation code (``models.local``) is exercised on a checkpoint made here:
the same model and processor classes, a small byte-level BPE tokenizer carrying the
Qwen special tokens and ``<think>``/``<answer>``, and the Qwen2-VL chat template.
``size="3b"`` gives the full NV-Reason-CXR-3B architecture (for GPU throughput
measurements); ``size="tiny"`` a few-hundred-kilobyte model for CPU tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.labels import CHEXPERT_LABELS
from models.prompts import PROMPT_PRESETS, REPORT_PROMPT

QWEN_SPECIAL = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
REASONING_TAGS = ["<think>", "</think>", "<answer>", "</answer>"]

# The Qwen2-VL chat template (public), unchanged: default system turn, image placeholder.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2,
                     rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]},
                     max_position_embeddings=4096, initializer_range=0.2),
        "vision": dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                       out_hidden_size=32, fullatt_block_indexes=[1], initializer_range=0.2),
        "vocab": 600,
    },
    # Qwen2.5-VL-3B-Instruct's published architecture (NV-Reason-CXR-3B is a fine-tune).
    "3b": {
        "text": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                     num_attention_heads=16, num_key_value_heads=2, tie_word_embeddings=True,
                     rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
                     max_position_embeddings=128000, rope_theta=1000000.0,
                     rms_norm_eps=1e-6, sliding_window=32768, max_window_layers=70),
        "vision": dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                       out_hidden_size=2048, fullatt_block_indexes=[7, 15, 23, 31]),
        "vocab": 151936,
    },
}


def _corpus() -> list[str]:
    words = [
        *CHEXPERT_LABELS, *PROMPT_PRESETS.values(), REPORT_PROMPT,
        "The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal.",
        "INDICATION: COMPARISON: TECHNIQUE: FINDINGS: IMPRESSION: Lungs: Heart: Bones:",
        "There is a right lower lobe opacity, possibly atelectasis or consolidation.",
        "Endotracheal tube and central venous catheter in place. Mediastinum is widened.",
    ]
    return words * 20


def build_tokenizer(vocab_size: int) -> Any:
    """A byte-level BPE with Qwen's special tokens; reasoning tags stay visible when decoded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(vocab_size, 600) - len(QWEN_SPECIAL) - len(REASONING_TAGS),
        special_tokens=QWEN_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = Qwen2TokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, bos_token=None,
    )
    fast.add_special_tokens({"additional_special_tokens": QWEN_SPECIAL[1:]})
    fast.add_tokens(REASONING_TAGS)  # ordinary added tokens: skip_special_tokens keeps them
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_checkpoint(out_dir: Path, size: str = "tiny", seed: int = 0,
                     save_weights: bool = True) -> Path:
    """Write a loadable random-weight checkpoint (config, weights, tokenizer, processor)."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessorFast,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    spec = SIZES[size]
    tokenizer = build_tokenizer(spec["vocab"])
    vocab = max(spec["vocab"], len(tokenizer)) if size == "3b" else len(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    text = dict(spec["text"], vocab_size=vocab)
    config = Qwen2_5_VLConfig(
        text_config=text, vision_config=spec["vision"],
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"], bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=spec["text"].get("tie_word_embeddings", False),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    if save_weights:
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
        model.generation_config = GenerationConfig(
            eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
            pad_token_id=ids["<|endoftext|>"], do_sample=False,
        )
        model.save_pretrained(out_dir, safe_serialization=True)
    else:
        config.save_pretrained(out_dir)
    image_processor = Qwen2VLImageProcessorFast(min_pixels=128 * 128, max_pixels=476 * 476)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out_dir)
    return out_dir
