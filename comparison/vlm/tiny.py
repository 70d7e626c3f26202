"""Build and save a tiny random LLaVA (CLIP vision tower + small Llama + word-level tokenizer).

Used by tests, the Triton-overhead benchmark and the demo: it stands in for a hospital's
model folder (MedGemma, MAIRA-2, ...) and goes through exactly the same production path
(`AutoProcessor` / `AutoModelForImageTextToText.from_pretrained(dir, local_files_only=True)`).
Its weights are random, so its text is noise; only plumbing, shapes and failure handling
may be asserted on. Nothing is downloaded: everything is built from configs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# A vocabulary that lets random weights at least emit the words a parser looks for.
_WORDS = (
    "{ } [ ] : , . \" narrative findings finding side zone change urgent confidence true false "
    "null nodule mass consolidation effusion pneumothorax edema atelectasis cardiomegaly "
    "support_device other new worsened stable improved resolved no_prior right left bilateral "
    "upper middle lower 0 1 2 3 4 5 6 7 8 9 the a of in is and no with chest lung lungs heart "
    "prior current study image images report indication interval days compare comparison "
    "frontal lateral describe change changes json return only user assistant system"
).split()

SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<image>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : "
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<image> {% elif part['type'] == 'text' %}{{ part['text'] }} {% endif %}"
    "{% endfor %}{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def build_tiny_llava(
    out_dir: str | Path,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    layers: int = 2,
    seed: int = 0,
) -> Path:
    """Write a loadable tiny random LLaVA model folder to `out_dir` and return its path.

    Parameters
    ----------
    out_dir
        Folder to create (parents too); an existing folder is overwritten file by file.
    image_size, patch_size
        The CLIP tower's input size and patch size: (image_size / patch_size)**2 image tokens.
    hidden_size, layers
        Width and depth of both towers; small so it loads and generates in well under a second.
    seed
        Torch seed for the random weights (same seed, same weights).
    """
    import torch
    from transformers import LlavaForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    vocab = {tok: i for i, tok in enumerate(SPECIALS + _WORDS)}
    processor = _processor(_tokenizer(vocab), image_size, patch_size)
    config = _config(vocab, image_size, patch_size, hidden_size, layers)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id = vocab["<pad>"]
    model.generation_config.eos_token_id = vocab["</s>"]
    model.generation_config.bos_token_id = vocab["<s>"]
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "priorwatch_tiny.json").write_text(json.dumps({"what": "tiny random LLaVA for tests", "seed": seed}))
    return out


def _tokenizer(vocab: dict[str, int]) -> Any:
    """A word-level fast tokenizer over `vocab` (`<image>` kept whole), left-padded for generation."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("<image>", behavior="isolated"), pre_tokenizers.Whitespace()]
    )
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens={"image_token": "<image>"},
    )
    tokenizer.padding_side = "left"  # decoder-only: left padding for batched generation
    return tokenizer


def _processor(tokenizer: Any, image_size: int, patch_size: int) -> Any:
    """The LLaVA processor: CLIP image processing (PIL) plus the tokenizer and chat template."""
    from transformers import CLIPImageProcessorPil, LlavaProcessor

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def _config(vocab: dict[str, int], image_size: int, patch_size: int, hidden_size: int, layers: int) -> Any:
    """The LlavaConfig: a CLIP vision tower and a Llama text model, both `hidden_size` wide and `layers` deep."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=hidden_size,
    )
    text = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
    )
    return LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=vocab["<image>"],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
