"""Prompt builders per model family: what a model is shown and asked, in its own format.

A family is chosen from the model folder's ``config.json`` ``model_type`` (or forced by the
``family`` setting):

- ``gemma3`` (Gemma 3, MedGemma 1 / 1.5): chat with several images, each introduced by text.
- ``maira2`` (MAIRA-2): current frontal, current lateral, prior frontal, prior report, indication;
  uses the processor's own ``format_and_preprocess_reporting_input`` when the folder ships it.
- ``llava`` (generic LLaVA and anything else image-text-to-text with a chat template).

Every family asks for the same JSON (``RESPONSE_SCHEMA``), which `parse.py` reads; models
that answer in prose (MAIRA-2 usually does) give an unstructured draft, never a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from priorwatch.vocabulary import Change, FindingType, Side, Zone

RESPONSE_SCHEMA = {
    "narrative": "one paragraph: the interval change, as a draft for a radiologist",
    "findings": [
        {
            "finding": "|".join(f.value for f in FindingType),
            "side": "|".join(s.value for s in Side) + "|null",
            "zone": "|".join(z.value for z in Zone) + "|null",
            "change": "|".join(c.value for c in Change),
            "urgent": "true|false",
            "confidence": "0.0-1.0",
        }
    ],
}


@dataclass
class VlmRequest:
    """One comparison as the model sees it (images already windowed and resized by the worker)."""

    current: Image.Image
    prior: Image.Image | None = None
    current_lateral: Image.Image | None = None
    prior_report: str | None = None
    indication: str | None = None
    interval_days: int | None = None

    @property
    def has_prior(self) -> bool:
        return self.prior is not None


@dataclass
class Prompt:
    """What an adapter built: text for the processor and the images in the order they appear."""

    text: str
    images: list[Image.Image]
    processor_inputs: dict[str, Any] | None = None  # set when the adapter ran the processor itself
    extra: dict[str, Any] = field(default_factory=dict)


def instruction(req: VlmRequest) -> str:
    """The task text shared by every family."""
    lines = [
        "You are assisting a radiologist. Compare the CURRENT chest radiograph with the PRIOR one "
        "and describe the interval change." if req.has_prior else
        "You are assisting a radiologist. There is NO prior study: describe the CURRENT chest radiograph "
        "only, do not use comparison words (new, worse, unchanged, improved, resolved), and use change \"no_prior\".",
    ]
    if req.indication:
        lines.append(f"Indication: {req.indication.strip()}")
    if req.has_prior and req.interval_days is not None:
        lines.append(f"Interval since the prior: {int(req.interval_days)} days.")
    if req.prior_report:
        lines.append(f"Prior report: {req.prior_report.strip()}")
    lines.append(
        "Sides are the patient's (in a PA image the patient's right is on the image's left). "
        "Mark urgent anything that needs action today. Reply with JSON only, in this form: "
        + json.dumps(RESPONSE_SCHEMA)
    )
    return "\n".join(lines)


class Adapter:
    """Base: a family's prompt builder. Subclasses override `build`."""

    family = "base"
    nested_images = False  # processor wants images as one list per sample (Gemma 3)

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def images(self, req: VlmRequest) -> list[tuple[str, Image.Image]]:
        out: list[tuple[str, Image.Image]] = []
        if req.prior is not None:
            out.append(("PRIOR frontal image:", req.prior))
        out.append(("CURRENT frontal image:", req.current))
        if req.current_lateral is not None:
            out.append(("CURRENT lateral image:", req.current_lateral))
        return out

    def build(self, req: VlmRequest) -> Prompt:
        raise NotImplementedError

    def _chat(self, messages: list[dict[str, Any]]) -> str:
        return str(self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))

    def image_token(self) -> str:
        tok = getattr(self.processor, "image_token", None) or getattr(
            getattr(self.processor, "tokenizer", None), "image_token", None
        )
        return str(tok or "<image>")


class LlavaAdapter(Adapter):
    """Generic LLaVA-style chat: one user turn with the images then the instruction."""

    family = "llava"

    def build(self, req: VlmRequest) -> Prompt:
        imgs = self.images(req)
        if getattr(self.processor, "chat_template", None):
            content: list[dict[str, Any]] = []
            for label, _ in imgs:
                content += [{"type": "text", "text": label}, {"type": "image"}]
            content.append({"type": "text", "text": instruction(req)})
            text = self._chat([{"role": "user", "content": content}])
        else:  # LLaVA 1.5 convention when the folder has no chat template
            tok = self.image_token()
            body = "\n".join(f"{label} {tok}" for label, _ in imgs)
            text = f"USER: {body}\n{instruction(req)} ASSISTANT:"
        return Prompt(text=text, images=[im for _, im in imgs])


class Gemma3Adapter(Adapter):
    """Gemma 3 / MedGemma: a system turn, then a user turn interleaving labelled images."""

    family = "gemma3"
    nested_images = True

    def build(self, req: VlmRequest) -> Prompt:
        imgs = self.images(req)
        content: list[dict[str, Any]] = []
        for label, _ in imgs:
            content += [{"type": "text", "text": label}, {"type": "image"}]
        content.append({"type": "text", "text": instruction(req)})
        messages = [
            {"role": "system", "content": [{"type": "text", "text": "You are an expert radiologist."}]},
            {"role": "user", "content": content},
        ]
        return Prompt(text=self._chat(messages), images=[im for _, im in imgs])


class Maira2Adapter(Adapter):
    """MAIRA-2: current frontal, current lateral, prior frontal, prior report, indication.

    With the folder's own processor code (``trust_remote_code``) the processor builds the
    exact MAIRA-2 prompt; otherwise the same inputs go through the chat template in MAIRA-2's
    order. MAIRA-2 writes findings prose rather than JSON: its drafts are usually unstructured.
    """

    family = "maira2"

    def images(self, req: VlmRequest) -> list[tuple[str, Image.Image]]:
        out = [("Current frontal image:", req.current)]
        if req.current_lateral is not None:
            out.append(("Current lateral image:", req.current_lateral))
        if req.prior is not None:
            out.append(("Prior frontal image:", req.prior))
        return out

    def build(self, req: VlmRequest) -> Prompt:
        fmt = getattr(self.processor, "format_and_preprocess_reporting_input", None)
        if callable(fmt):
            inputs = fmt(
                current_frontal=req.current,
                current_lateral=req.current_lateral,
                prior_frontal=req.prior,
                indication=req.indication,
                technique=None,
                comparison=(f"Prior study {int(req.interval_days)} days earlier." if req.interval_days is not None
                            and req.has_prior else None),
                prior_report=req.prior_report,
                return_tensors="pt",
                get_grounding=False,
            )
            return Prompt(text="", images=[], processor_inputs=dict(inputs))
        imgs = self.images(req)
        content: list[dict[str, Any]] = []
        for label, _ in imgs:
            content += [{"type": "text", "text": label}, {"type": "image"}]
        for label, value in (("INDICATION", req.indication), ("PRIOR_REPORT", req.prior_report)):
            content.append({"type": "text", "text": f"{label}: {value.strip() if value else 'None.'}"})
        content.append({"type": "text", "text": instruction(req)})
        if getattr(self.processor, "chat_template", None):
            text = self._chat([{"role": "user", "content": content}])
        else:
            tok = self.image_token()
            text = "\n".join(p["text"] if p["type"] == "text" else tok for p in content)
        return Prompt(text=text, images=[im for _, im in imgs])


ADAPTERS: dict[str, type[Adapter]] = {
    "llava": LlavaAdapter,
    "gemma3": Gemma3Adapter,
    "medgemma": Gemma3Adapter,
    "maira2": Maira2Adapter,
}

# config.json model_type -> family
_MODEL_TYPES = {
    "gemma3": "gemma3",
    "gemma3n": "gemma3",
    "medgemma": "gemma3",
    "maira2": "maira2",
    "llava": "llava",
    "llava_next": "llava",
    "llava_onevision": "llava",
}


def family_for(model_dir: str | Path, override: str | None = None) -> str:
    """The adapter family for a model folder: `override` if given, else from config.json."""
    if override and override.lower() not in ("", "auto"):
        fam = override.lower()
        if fam not in ADAPTERS:
            raise ValueError(f"unknown VLM family {override!r}; known: {', '.join(sorted(ADAPTERS))}")
        return fam
    cfg_path = Path(model_dir) / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError):
        return "llava"
    mt = str(cfg.get("model_type", "")).lower()
    if mt in _MODEL_TYPES:
        return _MODEL_TYPES[mt]
    archs = " ".join(cfg.get("architectures") or []).lower()
    if "maira" in archs:
        return "maira2"
    if "gemma3" in archs:
        return "gemma3"
    return "llava"


def adapter_for(family: str, processor: Any) -> Adapter:
    return ADAPTERS[family](processor)
