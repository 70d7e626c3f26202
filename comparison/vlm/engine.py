"""The VLM engine: a local Hugging Face image-text-to-text model folder, loaded offline.

This is the model code the Triton Python backend (`model_repository/vlm/1/model.py`) runs,
and what the benchmark calls in-process. It loads through the generic
`AutoProcessor` / `AutoModelForImageTextToText.from_pretrained(dir, local_files_only=True)`
path, so a hospital can drop in its own folder (MedGemma 1.5 4B, MAIRA-2, a LLaVA) without a
code change; nothing is ever fetched from a hub.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from comparison.vlm.adapters import VlmRequest, adapter_for, family_for
from comparison.vlm.parse import parse_model_output
from priorwatch.vocabulary import ComparisonResult

log = logging.getLogger(__name__)

ENGINE = "vlm"
ENGINE_VERSION = "priorwatch-vlm/1"


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """A worker image array (uint8, or float windowed to 0–1, or any range) as uint8, same shape."""
    a = np.asarray(arr)
    if a.dtype == np.uint8:
        return a
    a = a.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, 0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
    if lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif not (lo >= 0.0 and hi <= 255.0):
        a = (a - lo) / (hi - lo or 1.0) * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def to_gray(arr: np.ndarray) -> np.ndarray:
    """A 2-D uint8 image (what the Triton model takes) from H×W, H×W×C or C×H×W input."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3:
        a = a[..., 0] if a.shape[-1] == 1 else a[..., :3].astype(np.float32).mean(axis=-1)
    if a.ndim != 2:
        raise ValueError(f"an image must be 2-D (or H×W×C), got shape {a.shape}")
    return np.ascontiguousarray(to_uint8(a))


def to_pil(arr: np.ndarray | Image.Image) -> Image.Image:
    """A worker image array (H×W or H×W×C; uint8, or float windowed to 0–1) as an RGB PIL image."""
    if isinstance(arr, Image.Image):
        return arr.convert("RGB")
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = np.moveaxis(a, 0, -1)  # C×H×W -> H×W×C
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3):
        raise ValueError(f"an image must be 2-D (or H×W×C), got shape {a.shape}")
    return Image.fromarray(to_uint8(a)).convert("RGB")


def model_identity(model_dir: str | Path) -> tuple[str, str]:
    """(model name, model version) of a folder, for the result's provenance.

    The name is ``config.json``'s ``_name_or_path`` when it names a hub repo, else the folder
    name. The version is the hub commit when the folder is a hub-cache snapshot (or
    ``_commit_hash`` is recorded), else a short hash of the folder's config and weight-file
    names and sizes (same folder, same version; retrained weights, new version).
    """
    d = Path(model_dir).resolve()
    cfg: dict[str, Any] = {}
    try:
        cfg = json.loads((d / "config.json").read_text())
    except (OSError, ValueError):
        pass
    name_or_path = str(cfg.get("_name_or_path") or "")
    name = name_or_path if re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path) else d.name
    if d.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", d.name):
        repo = d.parent.parent.name  # models--org--name
        if repo.startswith("models--"):
            name = repo[len("models--"):].replace("--", "/")
        return name, d.name[:12]
    if cfg.get("_commit_hash"):
        return name, str(cfg["_commit_hash"])[:12]
    h = hashlib.sha256()
    for p in sorted(d.iterdir()) if d.is_dir() else []:
        if p.name == "config.json" or p.suffix in (".json", ".jinja", ".model", ".txt"):
            try:
                h.update(p.name.encode() + b"\0" + p.read_bytes())
            except OSError:
                pass
        elif p.is_file():
            h.update(f"{p.name}\0{p.stat().st_size}".encode())
    return name, h.hexdigest()[:12]


def _dtype(name: str, device: str) -> Any:
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16, "half": torch.float16}
    if name not in table:
        raise ValueError(f"unknown dtype {name!r}; use auto, float32, bfloat16 or float16")
    return table[name]


@dataclass
class VlmEngineSettings:
    """What the Triton model (or an in-process caller) configures: env vars or config parameters."""

    model_dir: str
    dtype: str = "auto"
    device: str = "cpu"
    max_new_tokens: int = 384
    family: str = "auto"
    trust_remote_code: bool = False

    ENV = {
        "model_dir": "PRIORWATCH_VLM_MODEL_DIR",
        "dtype": "PRIORWATCH_VLM_DTYPE",
        "device": "PRIORWATCH_VLM_DEVICE",
        "max_new_tokens": "PRIORWATCH_VLM_MAX_NEW_TOKENS",
        "family": "PRIORWATCH_VLM_FAMILY",
        "trust_remote_code": "PRIORWATCH_VLM_TRUST_REMOTE_CODE",
    }

    @classmethod
    def resolve(cls, parameters: dict[str, str] | None = None, environ: dict[str, str] | None = None
                ) -> "VlmEngineSettings":
        """Environment variables win over Triton config parameters (same names, lower case, no prefix)."""
        env = os.environ if environ is None else environ
        params = parameters or {}
        vals: dict[str, str] = {}
        for field_name, env_name in cls.ENV.items():
            v = env.get(env_name) or params.get(field_name) or ""
            if v.strip():
                vals[field_name] = v.strip()
        if "model_dir" not in vals:
            raise RuntimeError(
                "no VLM model folder configured: set PRIORWATCH_VLM_MODEL_DIR (or the 'model_dir' "
                "parameter in model_repository/vlm/config.pbtxt) to a local Hugging Face model folder"
            )
        return cls(
            model_dir=vals["model_dir"],
            dtype=vals.get("dtype", "auto"),
            device=vals.get("device", "cpu"),
            max_new_tokens=int(vals.get("max_new_tokens", 384)),
            family=vals.get("family", "auto"),
            trust_remote_code=vals.get("trust_remote_code", "false").lower() in ("1", "true", "yes"),
        )


class VlmEngine:
    """A local image-text-to-text model that writes interval-change drafts.

    Parameters
    ----------
    model_dir
        A local Hugging Face model folder (``config.json``, weights, processor files).
    dtype
        ``auto`` (bfloat16 on CUDA, float32 on CPU), ``float32``, ``bfloat16`` or ``float16``.
    device
        ``cpu``, ``cuda`` or ``cuda:N``.
    max_new_tokens
        Generation limit per request (greedy decoding).
    family
        ``auto`` (from ``config.json``) or one of ``gemma3``, ``medgemma``, ``maira2``, ``llava``.
    trust_remote_code
        Allow code shipped *inside the local folder* (MAIRA-2 needs it); never fetched.
    """

    def __init__(
        self,
        model_dir: str | Path,
        dtype: str = "auto",
        device: str = "cpu",
        max_new_tokens: int = 384,
        *,
        family: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.model_dir = Path(model_dir)
        if not (self.model_dir / "config.json").is_file():
            raise FileNotFoundError(f"not a model folder (no config.json): {self.model_dir}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.device = device
        self.max_new_tokens = int(max_new_tokens)
        self.family = family_for(self.model_dir, family)
        self.model_name, self.model_version = model_identity(self.model_dir)
        import transformers

        self.engine_version = f"{ENGINE_VERSION} transformers/{transformers.__version__} {self.family}"
        self.processor = AutoProcessor.from_pretrained(
            self.model_dir, local_files_only=True, trust_remote_code=trust_remote_code
        )
        self.model = AutoModelForImageTextToText.from_pretrained(
            self.model_dir, local_files_only=True, trust_remote_code=trust_remote_code,
            dtype=_dtype(dtype, device),
        ).to(device).eval()
        self.adapter = adapter_for(self.family, self.processor)
        self._torch = torch
        self._lock = threading.Lock()  # one generate at a time per engine (instances scale out)
        tok = getattr(self.processor, "tokenizer", None)
        if tok is not None and getattr(tok, "pad_token", None) is None and getattr(tok, "eos_token", None):
            tok.pad_token = tok.eos_token
        if tok is not None:
            tok.padding_side = "left"

    @classmethod
    def from_settings(cls, s: VlmEngineSettings) -> "VlmEngine":
        return cls(s.model_dir, s.dtype, s.device, s.max_new_tokens, family=s.family,
                   trust_remote_code=s.trust_remote_code)

    # -- generation ------------------------------------------------------------------------
    def _inputs(self, reqs: list[VlmRequest]) -> Any:
        prompts = [self.adapter.build(r) for r in reqs]
        if any(p.processor_inputs is not None for p in prompts):
            if len(prompts) != 1:
                raise ValueError("this adapter builds one request at a time")
            return prompts[0].processor_inputs
        images: list[Any]
        if self.adapter.nested_images:
            images = [p.images for p in prompts]
        else:
            images = [im for p in prompts for im in p.images]
        return self.processor(text=[p.text for p in prompts], images=images, padding=True, return_tensors="pt")

    def generate(self, reqs: list[VlmRequest]) -> list[str]:
        """Raw decoded replies, one per request, generated as one batch where the family allows."""
        if not reqs:
            return []
        if self.adapter.family == "maira2" and callable(
            getattr(self.processor, "format_and_preprocess_reporting_input", None)
        ) and len(reqs) > 1:
            return [t for r in reqs for t in self.generate([r])]
        inputs = self._inputs(reqs)
        model_dtype = next(self.model.parameters()).dtype
        moved = {}
        for k, v in dict(inputs).items():
            if hasattr(v, "to"):
                v = v.to(self.device)
                if v.is_floating_point():
                    v = v.to(model_dtype)
            moved[k] = v
        tok = getattr(self.processor, "tokenizer", None)
        with self._lock, self._torch.inference_mode():
            out = self.model.generate(
                **moved,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=getattr(tok, "pad_token_id", None),
            )
        new = out[:, moved["input_ids"].shape[1]:]
        return [s.strip() for s in self.processor.batch_decode(new, skip_special_tokens=True)]

    # -- comparison ------------------------------------------------------------------------
    def result_from_text(self, text: str, has_prior: bool) -> ComparisonResult:
        parsed = parse_model_output(text, has_prior=has_prior)
        return parsed.to_result(
            engine=ENGINE, engine_version=self.engine_version, model=self.model_name,
            model_version=self.model_version, has_prior=has_prior,
        )

    def compare_batch(self, reqs: list[VlmRequest]) -> list[tuple[ComparisonResult, str]]:
        """(result, raw text) per request."""
        texts = self.generate(reqs)
        return [(self.result_from_text(t, r.has_prior), t) for r, t in zip(reqs, texts)]

    def compare(
        self,
        current: np.ndarray | Image.Image,
        prior: np.ndarray | Image.Image | None,
        context: Any = None,
        *,
        current_lateral: np.ndarray | Image.Image | None = None,
    ) -> ComparisonResult:
        """Compare `current` with `prior` (None: no prior).

        `context` is any object with ``interval_days``, ``reason`` (or ``indication``) and
        ``prior_report`` attributes (the registration package's `CompareContext`), or None.
        """
        req = request_from(current, prior, context, current_lateral=current_lateral)
        return self.compare_batch([req])[0][0]


def request_from(
    current: np.ndarray | Image.Image,
    prior: np.ndarray | Image.Image | None,
    context: Any = None,
    *,
    current_lateral: np.ndarray | Image.Image | None = None,
) -> VlmRequest:
    indication = getattr(context, "reason", None) or getattr(context, "indication", None)
    interval = getattr(context, "interval_days", None)
    return VlmRequest(
        current=to_pil(current),
        prior=to_pil(prior) if prior is not None else None,
        current_lateral=to_pil(current_lateral) if current_lateral is not None else None,
        prior_report=getattr(context, "prior_report", None) or None,
        indication=indication or None,
        interval_days=int(interval) if interval is not None else None,
    )
