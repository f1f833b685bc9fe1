"""Random-weight Qwen2.5-VL checkpoints, built locally, for tests and benchmarks.

No weights can be downloaded where this project is built and tested, so the real
loading and generation code (``models.local``) is exercised on a checkpoint made here:
the same model and processor classes, a small byte-level BPE tokenizer carrying the
Qwen special tokens and ``<think>``/``<answer>``, and the Qwen2-VL chat template.
``size="3b"`` gives the full NV-Reason-CXR-3B architecture (for GPU throughput
measurements); ``size="tiny"`` a few-hundred-kilobyte model for CPU tests.

Random weights never write an ``<answer>`` with labels, so the report turn would never
run.  ``forced=ForcedReplies(...)`` builds a tiny checkpoint whose greedy output is known:
the findings reply when the conversation holds no earlier reply, the report reply when
it does, each followed by ``<|im_end|>`` (see ``_force_replies`` for how).
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class ForcedReplies:
    """The two replies a forced checkpoint gives: turn 1 (findings) and turn 2 (report)."""

    findings: str = (
        "<think>Hazy perihilar opacities with septal lines suggest interstitial edema. "
        "A visceral pleural line at the right apex with no lung markings beyond it is a "
        "pneumothorax.</think>\n<answer>Edema, Pneumothorax</answer>")
    report: str = (
        "<think>Summarise the two findings in the template.</think>\n"
        "EXAMINATION: Chest radiograph, frontal view.\n"
        "FINDINGS:\nLungs: Interstitial edema. Small right apical pneumothorax.\n"
        "Heart: Normal size.\n"
        "IMPRESSION:\n1. Small right apical pneumothorax.\n2. Interstitial edema.")

    @property
    def labels(self) -> tuple[str, ...]:
        from models.parsing import parse_output

        return parse_output(self.findings).labels


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


def _force_replies(model: Any, findings_id: int, report_id: int, eos_id: int) -> None:
    """Set the weights so that greedy decoding of any prompt gives one known reply.

    Every decoder layer's attention output and MLP output is zeroed except one attention
    head of layer 0, so the last hidden state is the token's own embedding plus what that
    head adds.  Token embeddings are basis vectors: the findings token ``F`` is e0, the
    report token ``R`` e2, every other token e1; the vision merger outputs zeros, so image
    positions carry nothing.  The head's query reads e1, its key e0 (in the slowest
    rotary pair, where positions barely rotate), its value e0, and it writes e3: a
    position of an ordinary token that can see an ``F`` earlier in the conversation
    gets a large e3; without one, its softmax averages values that are all exactly zero.
    ``lm_head`` maps e1 -> ``F``, e3 -> ``R`` and e0, e2 -> ``<|im_end|>``.  So turn 1
    ends "assistant\n" with no ``F`` in sight and says ``F`` then stops; turn 2 holds the
    first reply verbatim (re-tokenised as ``F``) and says ``R`` then stops.  Both turns go
    through the real processor, chat template, batching and ``generate()``.
    """
    import torch

    text = model.model.language_model
    head_dim = model.config.text_config.hidden_size // model.config.text_config.num_attention_heads
    slow = head_dim // 2 - 1  # the rotary pair with the lowest frequency
    with torch.no_grad():
        merger_out = model.model.visual.merger.mlp[2]
        merger_out.weight.zero_()
        merger_out.bias.zero_()
        emb = text.embed_tokens.weight
        emb.zero_()
        emb[:, 1] = 1.0
        emb[findings_id] = 0.0
        emb[findings_id, 0] = 1.0
        emb[report_id] = 0.0
        emb[report_id, 2] = 1.0
        for layer in text.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj,
                         layer.self_attn.v_proj):
                proj.weight.zero_()
                proj.bias.zero_()
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        attn = text.layers[0].self_attn
        # inputs reach the head RMS-normalised: a basis vector becomes sqrt(hidden) * e_i
        attn.q_proj.weight[slow, 1] = 2.0
        attn.k_proj.weight[slow, 0] = 2.0  # score ~ 4 * hidden / sqrt(head_dim): ~45 here
        attn.v_proj.weight[0, 0] = 1.0
        attn.o_proj.weight[3, 0] = 2.0
        lm = model.lm_head.weight
        lm.zero_()
        lm[findings_id, 1] = 10.0
        lm[report_id, 3] = 10.0
        lm[eos_id, 0] = lm[eos_id, 2] = 10.0


def build_checkpoint(out_dir: Path, size: str = "tiny", seed: int = 0,
                     save_weights: bool = True, forced: ForcedReplies | None = None) -> Path:
    """Write a loadable random-weight checkpoint (config, weights, tokenizer, processor).

    ``forced`` (tiny only): the checkpoint answers ``forced.findings`` then, in the report
    turn, ``forced.report``, so tests reach the second turn on the real local backend.
    """
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
    if forced is not None:
        if size != "tiny":
            raise ValueError("forced replies are for the tiny checkpoint only")
        tokenizer.add_tokens([forced.findings, forced.report])
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
        if forced is not None:
            _force_replies(model, tokenizer.convert_tokens_to_ids(forced.findings),
                           tokenizer.convert_tokens_to_ids(forced.report), ids["<|im_end|>"])
        model.save_pretrained(out_dir, safe_serialization=True)
    else:
        config.save_pretrained(out_dir)
    image_processor = Qwen2VLImageProcessorFast(min_pixels=128 * 128, max_pixels=476 * 476)
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                    video_processor=Qwen2VLVideoProcessor(),
                                    chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(out_dir)
    return out_dir
