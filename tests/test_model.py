"""The InternVL model: presets and their sizes, freezing, assembly from component checkpoints, export and reload."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
from tokenizers.models import BPE
from transformers import (
    AutoImageProcessor,
    AutoTokenizer,
    InternVLForConditionalGeneration,
    InternVLVisionConfig,
    InternVLVisionModel,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from sailvl.api.trainstage import ModelSpec
from sailvl.data.tokenizer import build_tiny_tokenizer
from sailvl.data.tokens import IMAGE_TOKENS, IMG_CONTEXT, IMG_END, IMG_START
from sailvl.model.build import build_model, build_preset
from sailvl.model.checkpoint import BuiltModel, ModelLoadError, export_checkpoint, load_checkpoint
from sailvl.model.components import parameter_counts, set_trainable
from sailvl.model.presets import PresetError, preset_config
from sailvl.model.vocab import IMAGE_TOKEN_NAMES

# -- presets -------------------------------------------------------------------------------------------------------


def test_sail_vl_2b_has_the_released_models_parameter_count() -> None:
    built = build_model(ModelSpec(preset="sail-vl-2b"), device="meta")
    counts = built.parameter_counts()
    assert abs(counts["total"] - 2.09e9) <= 0.02 * 2.09e9
    # InternViT-300M-448px, the MLP projector, Qwen2.5-1.5B with its untied lm_head (2 x 151936 x 1536 embeddings).
    assert counts == {
        "vision": 304_012_288,
        "projector": 8_662_016,
        "language": 1_777_088_000,
        "total": 2_089_762_304,
    }
    assert all(p.device.type == "meta" for p in built.model.parameters())


def test_sail_vl_2b_architecture_is_internvit_300m_and_qwen2_5_1_5b() -> None:
    config = preset_config("sail-vl-2b", vocab_size=151_668, image_token_id=151_667)
    vision, text = config.vision_config, config.text_config
    assert (vision.num_hidden_layers, vision.hidden_size, vision.num_attention_heads) == (24, 1024, 16)
    assert (vision.intermediate_size, vision.patch_size, vision.image_size) == (4096, (14, 14), (448, 448))
    assert vision.attention_bias and vision.norm_type == "layer_norm" and not vision.use_qk_norm
    assert (text.num_hidden_layers, text.hidden_size, text.intermediate_size) == (28, 1536, 8960)
    assert (text.num_attention_heads, text.num_key_value_heads, text.vocab_size) == (12, 2, 151_936)
    assert text.rope_parameters["rope_theta"] == 1e6 and not config.tie_word_embeddings
    assert (config.downsample_ratio, config.image_seq_length, config.projector_hidden_act) == (0.5, 256, "gelu")


def _build_and_forward(tokenizer: PreTrainedTokenizerFast) -> tuple[BuiltModel, torch.Tensor, torch.Tensor, float]:
    start = time.perf_counter()
    built = build_model(ModelSpec(preset="tiny"), tokenizer=tokenizer, seed=0)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8))
    pixels = torch.from_numpy(built.tiler(image))
    ids = built.tokenizer(f"describe {built.image_tokens(image)} please", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = built.model.eval()(input_ids=ids, pixel_values=pixels).logits
    return built, ids, logits, time.perf_counter() - start


def test_tiny_preset_is_about_a_million_parameters_and_runs_on_cpu() -> None:
    built, ids, logits, _ = _build_and_forward(build_tiny_tokenizer())
    counts = built.parameter_counts()
    assert 0.8e6 <= counts["total"] <= 1.3e6
    assert counts["total"] == sum(p.numel() for p in built.model.parameters())
    assert built.tokens_per_tile == 64 and built.tiler.tile_size == 224 and built.tiler.max_tiles == 6
    assert (ids == built.model.config.image_token_id).sum() == 7 * 64  # a 3x2 grid and a thumbnail, 64 tokens each
    assert logits.shape == (1, ids.shape[1], len(built.tokenizer))
    assert torch.isfinite(logits).all()


def test_a_seed_gives_the_same_weights_and_leaves_the_global_generator_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = build_model(ModelSpec(preset="tiny"), seed=7).model.state_dict()
    assert torch.equal(torch.rand(3), expected_next)
    b = build_model(ModelSpec(preset="tiny"), seed=7).model.state_dict()
    c = build_model(ModelSpec(preset="tiny"), seed=8).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_tile_size_override_changes_tokens_per_tile() -> None:
    built = build_model(ModelSpec(preset="tiny", tileSize=112, maxTiles=3), seed=0)
    assert built.tokens_per_tile == 16 and built.tiler.tile_size == 112 and built.tiler.max_tiles == 3
    assert built.model.config.vision_config.image_size == (112, 112)


def test_presets_refuse_what_they_cannot_hold() -> None:
    with pytest.raises(PresetError, match="unknown model preset 'huge'"):
        preset_config("huge", vocab_size=10, image_token_id=1)
    with pytest.raises(PresetError, match="vocabulary of 151936 tokens; the tokenizer has 200000"):
        preset_config("sail-vl-2b", vocab_size=200_000, image_token_id=1)


# -- freezing ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trainable", [["projector"], ["vision", "projector"], ["language"], ["vision", "language"]])
def test_freezing_trains_exactly_the_named_components(trainable: list[str]) -> None:
    built = build_model(ModelSpec(preset="tiny"), seed=0)
    counts = set_trainable(built.model, trainable)
    everything = parameter_counts(built.model)
    for component in ("vision", "projector", "language"):
        assert counts[component] == (everything[component] if component in trainable else 0)
    image = Image.fromarray(np.full((224, 224, 3), 128, np.uint8))
    ids = built.tokenizer(f"a {built.image_tokens(image)} b c", return_tensors="pt")["input_ids"]
    loss = built.model(input_ids=ids, pixel_values=torch.from_numpy(built.tiler(image)), labels=ids).loss
    loss.backward()
    modules = {
        "vision": [built.model.model.vision_tower],
        "projector": [built.model.model.multi_modal_projector],
        "language": [built.model.model.language_model, built.model.lm_head],
    }
    for component, parts in modules.items():
        grads = [p.grad for part in parts for p in part.parameters()]
        if component in trainable:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), component
        else:
            assert all(g is None for g in grads), component


def test_freezing_refuses_unknown_components() -> None:
    built = build_model(ModelSpec(preset="tiny"), seed=0)
    with pytest.raises(ValueError, match="non-empty subset of vision, projector, language; found \\['head'\\]"):
        set_trainable(built.model, ["head"])
    with pytest.raises(ValueError, match="found nothing"):
        set_trainable(built.model, [])


# -- assembling from component checkpoints -------------------------------------------------------------------------


def _llm_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """A byte-level BPE with ChatML tokens but no image tokens, as a language model's own tokenizer is."""
    backend = Tokenizer(BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(["a red circle left of a blue square", "two green triangles"] * 20, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    return tokenizer


def _components(
    tmp_path: Path, padded_vocab: int = 0, tied: bool = False
) -> tuple[Path, Path, InternVLVisionModel, Qwen2ForCausalLM]:
    torch.manual_seed(0)
    vision = InternVLVisionModel(
        InternVLVisionConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=56,
            patch_size=14,
            attention_bias=True,
        )
    )
    vision.save_pretrained(tmp_path / "vision")
    tokenizer = _llm_tokenizer(tmp_path / "language")
    llm = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=len(tokenizer) + padded_vocab,
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            tie_word_embeddings=tied,
        )
    )
    llm.save_pretrained(tmp_path / "language")
    return tmp_path / "vision", tmp_path / "language", vision, llm


def _assembled(vision_dir: Path, language_dir: Path) -> BuiltModel:
    spec = ModelSpec(preset="tiny", vision={"uri": f"file://{vision_dir}"}, language={"uri": str(language_dir)})
    return build_model(spec, seed=0)


def test_assembling_adds_image_tokens_with_mean_embeddings(tmp_path: Path) -> None:
    vision_dir, language_dir, vision, llm = _components(tmp_path)
    known = llm.config.vocab_size
    built = _assembled(vision_dir, language_dir)
    tokenizer, model = built.tokenizer, built.model

    new_ids = [tokenizer.convert_tokens_to_ids(t) for t in IMAGE_TOKEN_NAMES.values()]
    assert new_ids == list(range(known, known + 4))  # <img>, </img>, <IMG_CONTEXT>, <video>, appended
    assert len(tokenizer) == known + 4
    assert model.config.image_token_id == tokenizer.convert_tokens_to_ids(IMG_CONTEXT)
    assert tokenizer.context_image_token == IMG_CONTEXT and tokenizer.start_image_token == IMG_START
    assert tokenizer(IMG_START + IMG_CONTEXT + IMG_END)["input_ids"] == [new_ids[0], new_ids[2], new_ids[1]]

    embeddings, head = model.get_input_embeddings().weight, model.lm_head.weight
    assert embeddings.shape[0] == head.shape[0] == known + 4
    assert model.config.text_config.vocab_size == known + 4
    for weight, original in ((embeddings, llm.get_input_embeddings().weight), (head, llm.lm_head.weight)):
        assert torch.equal(weight[:known], original)  # the LLM's own rows are kept
        for token_id in new_ids:
            assert torch.allclose(weight[token_id], original.mean(dim=0), atol=1e-6)
    for name, value in vision.state_dict().items():
        assert torch.equal(model.model.vision_tower.state_dict()[name], value), name
    assert model.model.multi_modal_projector.linear_1.weight.std() > 0  # freshly initialised, not left empty
    assert built.tiler.tile_size == 56 and built.tokens_per_tile == 4

    image = Image.fromarray(np.full((100, 60, 3), 200, np.uint8))
    ids = tokenizer("a " + built.image_tokens(image) + " b", return_tensors="pt")["input_ids"]
    logits = model(input_ids=ids, pixel_values=torch.from_numpy(built.tiler(image))).logits
    assert logits.shape == (1, ids.shape[1], known + 4) and torch.isfinite(logits).all()


def test_assembling_over_a_padded_vocabulary_keeps_its_size_and_resets_the_new_rows(tmp_path: Path) -> None:
    vision_dir, language_dir, _, llm = _components(tmp_path, padded_vocab=16)  # as Qwen2.5 pads 151665 to 151936
    built = _assembled(vision_dir, language_dir)
    known = len(AutoTokenizer.from_pretrained(language_dir))
    embeddings = built.model.get_input_embeddings().weight
    assert embeddings.shape[0] == known + 16
    image_ids = [built.tokenizer.convert_tokens_to_ids(t) for t in IMAGE_TOKENS]
    assert all(
        torch.allclose(embeddings[i], llm.get_input_embeddings().weight[:known].mean(0), atol=1e-6) for i in image_ids
    )
    assert torch.equal(embeddings[known + 4 :], llm.get_input_embeddings().weight[known + 4 :])


def test_a_tied_language_model_gets_its_own_lm_head(tmp_path: Path) -> None:
    vision_dir, language_dir, _, llm = _components(tmp_path, tied=True)
    assert llm.lm_head.weight is llm.get_input_embeddings().weight
    built = _assembled(vision_dir, language_dir)
    head, embeddings = built.model.lm_head.weight, built.model.get_input_embeddings().weight
    assert head is not embeddings and torch.equal(head, embeddings)  # a copy, to be trained apart
    assert not built.model.config.tie_word_embeddings
    inputs = _inputs_without_template(built)
    with torch.no_grad():
        embeddings += 1.0  # training moves one and not the other
        expected = built.model.eval()(**inputs).logits
    assert not torch.equal(head, embeddings)
    reloaded = load_checkpoint(export_checkpoint(built, tmp_path / "out")).model.eval()
    assert reloaded.lm_head.weight is not reloaded.get_input_embeddings().weight
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, expected)


def test_assembling_refuses_mismatched_or_missing_components(tmp_path: Path) -> None:
    vision_dir, language_dir, _, _ = _components(tmp_path)
    with pytest.raises(ModelLoadError, match=r"must be an InternVLVisionModel .* found model_type 'qwen2'"):
        _assembled(language_dir, language_dir)
    with pytest.raises(ModelLoadError, match=r"tileSize is 448 but the vision checkpoint .* 56px tiles"):
        build_model(
            ModelSpec(preset="tiny", tileSize=448, vision={"uri": str(vision_dir)}, language={"uri": str(language_dir)})
        )
    with pytest.raises(ModelLoadError, match=r"model.vision is set but model.language is not"):
        build_model(ModelSpec(preset="tiny", vision={"uri": str(vision_dir)}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"empty is not a Hugging Face checkpoint folder: it has no config.json"):
        _assembled(tmp_path / "empty", language_dir)
    with pytest.raises(ValueError, match=r"must name a folder; .* does not exist"):
        _assembled(tmp_path / "missing", language_dir)


# -- export and reload ---------------------------------------------------------------------------------------------


def _inputs(built: BuiltModel) -> dict[str, torch.Tensor]:
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (250, 420, 3), dtype=np.uint8))
    text = built.tokenizer.apply_chat_template(
        [{"role": "user", "content": "<image>\nwhat shapes?"}], tokenize=False, add_generation_prompt=True
    )
    text = text.replace(IMG_CONTEXT, built.image_tokens(image), 1)  # the template writes the image as IMG_CONTEXT
    ids = built.tokenizer(text, return_tensors="pt")["input_ids"]
    return {"input_ids": ids, "pixel_values": torch.from_numpy(built.tiler(image))}


def test_export_then_from_pretrained_gives_identical_logits(tmp_path: Path) -> None:
    built = build_preset("tiny", seed=0, max_tiles=4)
    inputs = _inputs(built)
    with torch.no_grad():
        expected = built.model.eval()(**inputs).logits
    folder = export_checkpoint(built, tmp_path / "final")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no partial folder left behind

    reloaded = InternVLForConditionalGeneration.from_pretrained(folder).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, expected)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.context_image_token_id == reloaded.config.image_token_id
    assert tokenizer(IMG_START + IMG_CONTEXT)["input_ids"] == built.tokenizer(IMG_START + IMG_CONTEXT)["input_ids"]
    image_processor = AutoImageProcessor.from_pretrained(folder)
    assert type(image_processor).__name__ == "GotOcr2ImageProcessorPil"
    assert json.loads((folder / "processor_config.json").read_text())["image_seq_length"] == 64
    # Generation stops at the end of turn and at <|endoftext|>, as vLLM reads the ids from generation_config.json.
    stops = [built.tokenizer.eos_token_id, built.tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    assert reloaded.generation_config.eos_token_id == stops

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (250, 420, 3), dtype=np.uint8))
    processed = image_processor(image, crop_to_patches=True, return_tensors="np")["pixel_values"]
    assert np.array_equal(processed, inputs["pixel_values"].numpy())  # transformers tiles it as we did

    loaded = load_checkpoint(folder)
    assert loaded.tiler == built.tiler and loaded.tokens_per_tile == 64
    with torch.no_grad():
        assert torch.equal(loaded.model.eval()(**inputs).logits, expected)


def test_an_assembled_model_exports_and_reloads_through_the_spec(tmp_path: Path) -> None:
    vision_dir, language_dir, _, _ = _components(tmp_path)
    built = _assembled(vision_dir, language_dir)
    inputs = _inputs_without_template(built)
    with torch.no_grad():
        expected = built.model.eval()(**inputs).logits
    export_checkpoint(built, tmp_path / "claims" / "ckpt" / "stage-a" / "final")

    by_pvc = build_model(ModelSpec(init={"uri": "pvc://ckpt/stage-a/final"}, maxTiles=2), pvc_root=tmp_path / "claims")
    by_stage = build_model(
        ModelSpec(init={"stage": "stage-a"}), init_uri=f"file://{tmp_path}/claims/ckpt/stage-a/final"
    )
    assert by_pvc.tiler.max_tiles == 2 and by_pvc.source == "pvc://ckpt/stage-a/final"
    for loaded in (by_pvc, by_stage):
        with torch.no_grad():
            assert torch.equal(loaded.model.eval()(**inputs).logits, expected)
        assert len(loaded.tokenizer) == len(built.tokenizer)


def _inputs_without_template(built: BuiltModel) -> dict[str, torch.Tensor]:
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (90, 150, 3), dtype=np.uint8))
    ids = built.tokenizer("a red " + built.image_tokens(image) + " circle", return_tensors="pt")["input_ids"]
    return {"input_ids": ids, "pixel_values": torch.from_numpy(built.tiler(image))}


def test_export_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    built = build_preset("tiny", seed=0)
    export_checkpoint(built, tmp_path / "out")
    with pytest.raises(FileExistsError, match="already exists"):
        export_checkpoint(built, tmp_path / "out")
    other = build_preset("tiny", seed=1)
    export_checkpoint(other, tmp_path / "out", overwrite=True, chat_template="{{ messages }}")
    assert (tmp_path / "out" / "chat_template.jinja").read_text() == "{{ messages }}"
    reloaded = load_checkpoint(tmp_path / "out").model.state_dict()
    assert all(torch.equal(reloaded[k], v) for k, v in other.model.state_dict().items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_loading_refuses_what_is_not_an_internvl_checkpoint(tmp_path: Path) -> None:
    _, language_dir, _, _ = _components(tmp_path)
    with pytest.raises(ModelLoadError, match=r"must hold an InternVL checkpoint .* found 'qwen2'"):
        load_checkpoint(language_dir)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="must be a JSON object with a model_type"):
        load_checkpoint(tmp_path / "broken")
    with pytest.raises(ModelLoadError, match="init names stage 'stage-a': resolve it"):
        build_model(ModelSpec(init={"stage": "stage-a"}))
    with pytest.raises(ModelLoadError, match="device 'meta' builds a preset's structure only"):
        build_model(ModelSpec(init={"uri": str(language_dir)}), device="meta")


def test_the_tiny_tokenizer_carries_the_named_image_tokens() -> None:
    tokenizer = build_tiny_tokenizer()
    assert all(getattr(tokenizer, name) == token for name, token in IMAGE_TOKEN_NAMES.items())
