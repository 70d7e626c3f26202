"""The VLM model code in-process: settings, family choice, adapters, provenance, generation
shapes on the tiny random LLaVA (never its text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from comparison.vlm.adapters import Gemma3Adapter, LlavaAdapter, Maira2Adapter, VlmRequest, family_for, instruction
from comparison.vlm.engine import VlmEngine, VlmEngineSettings, model_identity, request_from, to_gray, to_pil
from priorwatch.vocabulary import ComparisonResult
from tests.vlm.conftest import Ctx


def _img(h: int = 40, w: int = 30) -> Image.Image:
    return Image.fromarray(np.zeros((h, w), np.uint8)).convert("RGB")


def test_settings_env_wins_over_parameters() -> None:
    s = VlmEngineSettings.resolve(
        {"model_dir": "/from/config", "max_new_tokens": "99", "device": "cpu"},
        {"PRIORWATCH_VLM_MODEL_DIR": "/from/env", "PRIORWATCH_VLM_DTYPE": "bfloat16"},
    )
    assert (s.model_dir, s.max_new_tokens, s.dtype, s.device) == ("/from/env", 99, "bfloat16", "cpu")


def test_settings_without_model_dir_say_what_to_set() -> None:
    with pytest.raises(RuntimeError, match="PRIORWATCH_VLM_MODEL_DIR"):
        VlmEngineSettings.resolve({"model_dir": ""}, {})


@pytest.mark.parametrize(
    ("model_type", "family"),
    [("gemma3", "gemma3"), ("maira2", "maira2"), ("llava", "llava"), ("llava_next", "llava"), ("qwen2_vl", "llava")],
)
def test_family_from_config(tmp_path: Path, model_type: str, family: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    assert family_for(tmp_path) == family


def test_family_override(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    assert family_for(tmp_path, "medgemma") == "medgemma"
    with pytest.raises(ValueError, match="unknown VLM family"):
        family_for(tmp_path, "gpt")


def test_model_identity_of_a_hub_snapshot(tmp_path: Path) -> None:
    snap = tmp_path / "models--google--medgemma-1.5-4b-it" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    assert model_identity(snap) == ("google/medgemma-1.5-4b-it", "a" * 12)


def test_model_identity_is_stable_and_follows_content(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    (tmp_path / "model.safetensors").write_bytes(b"x" * 10)
    a = model_identity(tmp_path)
    assert a == model_identity(tmp_path) and a[0] == tmp_path.name
    (tmp_path / "model.safetensors").write_bytes(b"x" * 11)
    assert model_identity(tmp_path)[1] != a[1]


def test_image_conversion() -> None:
    f = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    g = to_gray(f)
    assert g.dtype == np.uint8 and g.shape == (3, 4) and g.max() == 255 and g.min() == 0
    assert to_gray(np.full((3, 4), 300.0)).dtype == np.uint8
    assert to_pil(f).mode == "RGB" and to_pil(f).size == (4, 3)
    with pytest.raises(ValueError):
        to_gray(np.zeros((2, 2, 2, 2)))


def test_instruction_carries_context() -> None:
    req = VlmRequest(current=_img(), prior=_img(), prior_report="Clear lungs.", indication="cough", interval_days=31)
    text = instruction(req)
    assert "31 days" in text and "cough" in text and "Clear lungs." in text and '"findings"' in text
    no_prior = instruction(VlmRequest(current=_img(), interval_days=31))
    assert "NO prior" in no_prior and "31 days" not in no_prior and "no_prior" in no_prior


class FakeProcessor:
    chat_template = "x"
    image_token = "<img>"

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def apply_chat_template(self, messages: list[Any], **kw: Any) -> str:
        self.messages = messages
        return json.dumps(messages)


def test_gemma3_adapter_interleaves_labelled_images() -> None:
    proc = FakeProcessor()
    lat = _img(20, 20)
    p = Gemma3Adapter(proc).build(VlmRequest(current=_img(), prior=_img(10, 10), current_lateral=lat))
    assert Gemma3Adapter.nested_images
    system, user = proc.messages
    assert system["role"] == "system"
    kinds = [c["type"] for c in user["content"]]
    assert kinds == ["text", "image", "text", "image", "text", "image", "text"]
    assert [c["text"] for c in user["content"] if c["type"] == "text"][:3] == [
        "PRIOR frontal image:", "CURRENT frontal image:", "CURRENT lateral image:"]
    assert p.images[0].size == (10, 10) and p.images[2] is lat


def test_maira2_adapter_uses_the_folders_own_formatter() -> None:
    seen: dict[str, Any] = {}

    class MairaProcessor:
        def format_and_preprocess_reporting_input(self, **kw: Any) -> dict[str, Any]:
            seen.update(kw)
            return {"input_ids": "ids"}

    cur, lat, prior = _img(), _img(), _img()
    p = Maira2Adapter(MairaProcessor()).build(VlmRequest(
        current=cur, current_lateral=lat, prior=prior, prior_report="Old.", indication="SOB", interval_days=7))
    assert p.processor_inputs == {"input_ids": "ids"}
    assert seen["current_frontal"] is cur and seen["current_lateral"] is lat and seen["prior_frontal"] is prior
    assert seen["prior_report"] == "Old." and seen["indication"] == "SOB" and "7 days" in seen["comparison"]
    assert seen["get_grounding"] is False


def test_maira2_adapter_without_formatter_keeps_maira_order() -> None:
    proc = FakeProcessor()
    p = Maira2Adapter(proc).build(VlmRequest(current=_img(1, 1), prior=_img(2, 2), prior_report="Old."))
    assert [im.size for im in p.images] == [(1, 1), (2, 2)]
    texts = [c["text"] for c in proc.messages[0]["content"] if c["type"] == "text"]
    assert texts[:2] == ["Current frontal image:", "Prior frontal image:"]
    assert "PRIOR_REPORT: Old." in texts


def test_llava_adapter_without_chat_template() -> None:
    proc = FakeProcessor()
    proc.chat_template = None  # type: ignore[assignment]
    p = LlavaAdapter(proc).build(VlmRequest(current=_img(), prior=_img()))
    assert p.text.count("<img>") == 2 and p.text.startswith("USER:") and p.text.endswith("ASSISTANT:")


def test_engine_loads_the_tiny_folder_offline(engine: VlmEngine, tiny_model_dir: Path) -> None:
    assert engine.family == "llava"
    assert engine.model_name == "tiny-llava"
    assert engine.model_version == model_identity(tiny_model_dir)[1]
    assert "transformers/" in engine.engine_version


def test_engine_compare_shapes(engine: VlmEngine) -> None:
    cur = np.random.default_rng(0).random((64, 48), dtype=np.float32)
    r = engine.compare(cur, cur[::-1].copy(), Ctx(interval_days=12, reason="cough", prior_report="Clear."))
    assert isinstance(r, ComparisonResult)
    assert r.engine == "vlm" and r.has_prior and r.draft_text
    assert engine.compare(cur, None, None).has_prior is False


def test_engine_batch_with_mixed_requests(engine: VlmEngine) -> None:
    a = np.zeros((40, 40), np.uint8)
    reqs = [
        request_from(a, a, Ctx(interval_days=3)),
        request_from(a, None, None),
        request_from(a, a, Ctx(), current_lateral=a),
    ]
    texts = engine.generate(reqs)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    # Greedy decoding: the same request alone or in a padded batch gives the same text.
    assert engine.generate([reqs[1]]) == [texts[1]]
    results = engine.compare_batch(reqs)
    assert [r.has_prior for r, _ in results] == [True, False, True]


def test_engine_refuses_a_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        VlmEngine(tmp_path)
