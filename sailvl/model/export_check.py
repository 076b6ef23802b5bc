"""`sailvl check-export DIR`: does a checkpoint folder hold what transformers and vLLM need to serve it as trained?

Each rule reads the folder's files (never the weights' values) and reports `Problem`s naming the file and the field,
what was expected and what was found. The rules are the ones a real vLLM or `from_pretrained` fails on, or worse,
serves wrong without failing:

- `files`: config, generation config, tokenizer, image processor and processor configs, chat template, weights;
- `architecture`: `InternVLForConditionalGeneration`, model types `internvl` / `internvl_vision`;
- `dtype`: declared in config.json and the dtype the weights are stored in (vLLM's `auto` reads it);
- `image-tokens`: `image_token_id` is the tokenizer's `<IMG_CONTEXT>`, and the tokenizer names the image tokens
  transformers' InternVLProcessor (and so vLLM) looks up;
- `image-seq-length`: the tokens per tile agree in config.json and processor_config.json and equal what the tile
  size, patch size and pixel-shuffle ratio give;
- `image-processor`: GotOcr2 tiling at the vision tower's tile size, with a thumbnail, sane tile limits;
- `processor`: `InternVLProcessor`;
- `chat-template`: string content with images and OpenAI list content render to the same prompt, one
  `<IMG_CONTEXT>` per image (`sailvl.data.chat`);
- `vocabulary`: every token id fits the embedding matrix;
- `generation`: generation stops at the tokenizer's end of turn and pads with its pad token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open

from sailvl.data.chat import as_parts, prompt_content
from sailvl.data.tokens import IMG_CONTEXT, IMG_END, IMG_START

ARCHITECTURE = "InternVLForConditionalGeneration"
DTYPES = ("bfloat16", "float16", "float32")
SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}
# The names transformers' InternVLProcessor reads off the tokenizer; vLLM builds its prompt replacement from them.
PROCESSOR_TOKENS = {
    "start_image_token": IMG_START,
    "end_image_token": IMG_END,
    "context_image_token": IMG_CONTEXT,
    "video_token": None,  # any single token: the processor refuses a tokenizer without one
}
IMAGE_PROCESSOR_TYPES = ("GotOcr2ImageProcessor", "GotOcr2ImageProcessorFast", "GotOcr2ImageProcessorPil")
# Conversations the chat template must render alike as strings and as parts: one image, two, several turns.
TEMPLATE_CASES: tuple[list[dict[str, str]], ...] = (
    [{"role": "user", "content": "<image>\nDescribe this image in detail."}],
    [{"role": "user", "content": "<image>\n<image>\nWhich image has more circles?"}],
    [
        {"role": "system", "content": "Answer with one word."},
        {"role": "user", "content": "<image>\nWhat colour is the square?"},
        {"role": "assistant", "content": "Red."},
        {"role": "user", "content": "And the circle?"},
    ],
)


@dataclass(frozen=True)
class Problem:
    rule: str
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message} [{self.rule}]"


class ExportCheckError(ValueError):
    """An export that transformers or vLLM would refuse or serve differently from how it was trained."""

    def __init__(self, folder: Path, problems: list[Problem]) -> None:
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{folder} is not a servable export ({len(problems)} problem(s)):\n{lines}")
        self.problems = problems


def check_export(folder: str | Path, *, weights: bool = True) -> list[Problem]:
    """Every problem of the export in `folder` (empty: transformers and vLLM serve it as trained).

    `weights=False` leaves out the weight files (to check the configuration before the weights are copied).
    """
    found = _Folder(Path(folder), weights=weights)
    problems = list(_files(found))
    if not found.json("config.json"):
        return problems  # without a config nothing else can be judged
    unreadable = {p.file for p in problems}  # each missing file is reported once, not again by every rule using it
    for rule in RULES:
        problems += [p for p in rule(found) if p.file not in unreadable]
    return problems


def assert_export(folder: str | Path, *, weights: bool = True) -> None:
    problems = check_export(folder, weights=weights)
    if problems:
        raise ExportCheckError(Path(folder), problems)


class _Folder:
    """The export's files, each read once; unreadable JSON is a problem of its own (reported by `_files`)."""

    def __init__(self, root: Path, *, weights: bool) -> None:
        self.root = root
        self.weights = weights
        self._json: dict[str, dict[str, Any] | None] = {}
        self._tokenizer: Any = None
        self.tokenizer_error: str | None = None

    def json(self, name: str) -> dict[str, Any]:
        if name not in self._json:
            self._json[name] = _read_json(self.root / name)
        return self._json[name] or {}

    def bad_json(self, name: str) -> str | None:
        path = self.root / name
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            return f"cannot be read as JSON: {err}"
        return None if isinstance(value, dict) else f"expected a JSON object; found {type(value).__name__}"

    @property
    def config(self) -> dict[str, Any]:
        return self.json("config.json")

    def tokenizer(self) -> Any:
        """The tokenizer as transformers loads it (None, with `tokenizer_error` set, when it cannot be)."""
        if self._tokenizer is None and self.tokenizer_error is None:
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.root)
            except (OSError, ValueError, TypeError, KeyError) as err:
                self.tokenizer_error = f"transformers cannot load the tokenizer: {err}"
        return self._tokenizer


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _files(found: _Folder) -> Iterator[Problem]:
    required = [
        ("config.json", "the model configuration"),
        ("generation_config.json", "the generation settings (end-of-turn and pad tokens)"),
        ("tokenizer_config.json", "the tokenizer's settings and image token names"),
        ("tokenizer.json", "the tokenizer"),
        ("preprocessor_config.json", "the image processor (tiling) configuration"),
        ("processor_config.json", "the processor class and tokens per tile"),
    ]
    for name, what in required:
        if not (found.root / name).is_file():
            yield Problem("files", name, "-", f"missing: it holds {what}")
        elif (error := found.bad_json(name)) is not None:
            yield Problem("files", name, "-", error)
    template = found.root / "chat_template.jinja"
    if not template.is_file() and not found.json("tokenizer_config.json").get("chat_template"):
        yield Problem("files", "chat_template.jinja", "-", "missing, and tokenizer_config.json has no chat_template")
    if found.weights:
        yield from _weight_files(found)


def _weight_files(found: _Folder) -> Iterator[Problem]:
    single, index = found.root / "model.safetensors", found.root / "model.safetensors.index.json"
    if single.is_file():
        return
    if not index.is_file():
        yield Problem("files", "model.safetensors", "-", "missing (nor is there a model.safetensors.index.json)")
        return
    weight_map = found.json(index.name).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        yield Problem("files", index.name, "weight_map", "expected a map from tensor names to shard files")
        return
    for shard in sorted(set(map(str, weight_map.values()))):
        if not (found.root / shard).is_file():
            yield Problem("files", shard, "-", f"missing: {index.name} names it")


def weight_dtypes(root: Path) -> dict[str, set[str]]:
    """Shard file → the dtypes of its floating-point tensors (read from the headers, not the data)."""
    out: dict[str, set[str]] = {}
    for path in sorted(root.glob("*.safetensors")):
        with safe_open(path, framework="pt") as handle:
            out[path.name] = {handle.get_slice(name).get_dtype() for name in handle.keys()}  # noqa: SIM118
    return out


def _architecture(found: _Folder) -> Iterator[Problem]:
    config = found.config
    if config.get("architectures") != [ARCHITECTURE]:
        yield Problem(
            "architecture",
            "config.json",
            "architectures",
            f"expected [{ARCHITECTURE!r}]; found {config.get('architectures')!r}",
        )
    if config.get("model_type") != "internvl":
        yield Problem(
            "architecture", "config.json", "model_type", f"expected 'internvl'; found {config.get('model_type')!r}"
        )
    vision_type = (config.get("vision_config") or {}).get("model_type")
    if vision_type != "internvl_vision":
        yield Problem(
            "architecture",
            "config.json",
            "vision_config.model_type",
            f"expected 'internvl_vision'; found {vision_type!r}",
        )
    if not (config.get("text_config") or {}).get("model_type"):
        yield Problem("architecture", "config.json", "text_config.model_type", "missing: the language model is unnamed")


def _dtype(found: _Folder) -> Iterator[Problem]:
    config = found.config
    declared = config.get("dtype", config.get("torch_dtype"))
    if declared not in DTYPES:
        yield Problem(
            "dtype",
            "config.json",
            "dtype",
            f"expected one of {', '.join(DTYPES)} (vLLM's --dtype auto serves what it says); found {declared!r}",
        )
        return
    if not found.weights:
        return
    try:
        shards = weight_dtypes(found.root)
    except (OSError, ValueError) as err:
        yield Problem("dtype", "model.safetensors", "weights", f"cannot read the tensor headers: {err}")
        return
    for shard, dtypes in shards.items():
        floating = {SAFETENSORS_DTYPES.get(d, d) for d in dtypes if d.startswith(("F", "BF"))}
        if floating - {declared}:
            yield Problem(
                "dtype",
                shard,
                "weights",
                f"config.json declares {declared} but the tensors are stored as {', '.join(sorted(floating))}",
            )


def _image_tokens(found: _Folder) -> Iterator[Problem]:
    tokenizer = found.tokenizer()
    if tokenizer is None:
        yield Problem("image-tokens", "tokenizer.json", "-", found.tokenizer_error or "cannot be loaded")
        return
    vocab = tokenizer.get_vocab()
    settings = found.json("tokenizer_config.json")
    for name, expected in PROCESSOR_TOKENS.items():
        token = getattr(tokenizer, name, None)
        if not isinstance(token, str) or (expected is not None and token != expected):
            wanted = repr(expected) if expected else "a token"
            yield Problem(
                "image-tokens",
                "tokenizer_config.json",
                name,
                f"expected {wanted} (transformers' InternVLProcessor reads it); found {settings.get(name, token)!r}",
            )
        elif token not in vocab:
            yield Problem("image-tokens", "tokenizer.json", name, f"{token!r} is not in the vocabulary")
        elif len(tokenizer.encode(token, add_special_tokens=False)) != 1:
            yield Problem("image-tokens", "tokenizer.json", name, f"{token!r} does not tokenize to one id")
    image_token_id = found.config.get("image_token_id")
    context_id = vocab.get(IMG_CONTEXT)
    if image_token_id != context_id:
        yield Problem(
            "image-tokens",
            "config.json",
            "image_token_id",
            f"expected the tokenizer's id of {IMG_CONTEXT} ({context_id}); found {image_token_id!r}",
        )


def tokens_per_tile(config: dict[str, Any]) -> int | None:
    """What the tile size, patch size and pixel shuffle of `config` give (None when they are missing)."""
    vision = config.get("vision_config") or {}
    size, patch, ratio = (
        _side(vision.get("image_size")),
        _side(vision.get("patch_size")),
        config.get("downsample_ratio"),
    )
    if not size or not patch or not isinstance(ratio, int | float) or size % patch:
        return None
    return round((size // patch) ** 2 * ratio**2)


def _side(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1] and isinstance(value[0], int):
        return value[0]
    return None


def _image_seq_length(found: _Folder) -> Iterator[Problem]:
    config = found.config
    expected = tokens_per_tile(config)
    if expected is None:
        yield Problem(
            "image-seq-length",
            "config.json",
            "vision_config.image_size",
            "expected square tiles that the patch size divides, and a downsample_ratio; found "
            f"image_size {(config.get('vision_config') or {}).get('image_size')!r}, "
            f"patch_size {(config.get('vision_config') or {}).get('patch_size')!r}, "
            f"downsample_ratio {config.get('downsample_ratio')!r}",
        )
        return
    for name, value in (
        ("config.json", config.get("image_seq_length")),
        ("processor_config.json", found.json("processor_config.json").get("image_seq_length")),
    ):
        if value != expected:
            yield Problem(
                "image-seq-length",
                name,
                "image_seq_length",
                f"expected {expected} tokens per tile (tile size, patch size and downsample ratio give it); "
                f"found {value!r}",
            )


def _image_processor(found: _Folder) -> Iterator[Problem]:
    settings = found.json("preprocessor_config.json")
    name = "preprocessor_config.json"
    kind = settings.get("image_processor_type")
    if kind not in IMAGE_PROCESSOR_TYPES:
        yield Problem(
            "image-processor", name, "image_processor_type", f"expected GotOcr2ImageProcessor; found {kind!r}"
        )
    side = _side((found.config.get("vision_config") or {}).get("image_size"))
    size = settings.get("size")
    if side is not None and size != {"height": side, "width": side}:
        yield Problem(
            "image-processor",
            name,
            "size",
            f"expected {{'height': {side}, 'width': {side}}} (the tile size); found {size!r}",
        )
    if settings.get("crop_to_patches") is not True:
        yield Problem(
            "image-processor",
            name,
            "crop_to_patches",
            "expected true (dynamic tiling with a thumbnail, as sailvl trains); "
            f"found {settings.get('crop_to_patches')!r}",
        )
    low, high = settings.get("min_patches"), settings.get("max_patches")
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        yield Problem(
            "image-processor", name, "max_patches", f"expected 1 <= min_patches <= max_patches; found {low!r}, {high!r}"
        )


def _processor(found: _Folder) -> Iterator[Problem]:
    kind = found.json("processor_config.json").get("processor_class")
    if kind != "InternVLProcessor":
        yield Problem(
            "processor", "processor_config.json", "processor_class", f"expected 'InternVLProcessor'; found {kind!r}"
        )


def _chat_template(found: _Folder) -> Iterator[Problem]:
    tokenizer = found.tokenizer()
    where = "chat_template.jinja" if (found.root / "chat_template.jinja").is_file() else "tokenizer_config.json"
    if tokenizer is None or not tokenizer.chat_template:
        return  # reported by `files` / `image-tokens`
    for case in TEMPLATE_CASES:
        images = sum(m["content"].count("<image>") for m in case)
        try:
            as_string = _apply(tokenizer, [{**m, "content": prompt_content(m["content"])} for m in case])
            as_list = _apply(tokenizer, [{**m, "content": as_parts(m["content"])} for m in case])
        except Exception as err:  # a template's own error (jinja raises many kinds)
            yield Problem("chat-template", where, "chat_template", f"cannot render {case!r:.80}: {err}")
            continue
        if as_string != as_list:
            yield Problem(
                "chat-template",
                where,
                "chat_template",
                f"string and OpenAI list content render differently (vLLM renders the list): {as_string!r} vs "
                f"{as_list!r}",
            )
        elif as_list.count(IMG_CONTEXT) != images:
            yield Problem(
                "chat-template",
                where,
                "chat_template",
                f"expected {images} {IMG_CONTEXT} for {images} image(s), where vLLM puts each image; found "
                f"{as_list.count(IMG_CONTEXT)} in {as_list!r}",
            )


def _apply(tokenizer: Any, messages: list[dict[str, Any]]) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def _vocabulary(found: _Folder) -> Iterator[Problem]:
    tokenizer = found.tokenizer()
    rows = (found.config.get("text_config") or {}).get("vocab_size")
    if tokenizer is None or not isinstance(rows, int):
        if not isinstance(rows, int):
            yield Problem("vocabulary", "config.json", "text_config.vocab_size", f"expected an integer; found {rows!r}")
        return
    if len(tokenizer) > rows:
        yield Problem(
            "vocabulary",
            "config.json",
            "text_config.vocab_size",
            f"the tokenizer has {len(tokenizer)} tokens but the embedding matrix only {rows} rows",
        )


def _generation(found: _Folder) -> Iterator[Problem]:
    tokenizer = found.tokenizer()
    if tokenizer is None:
        return
    settings = found.json("generation_config.json")
    eos = settings.get("eos_token_id")
    stops = eos if isinstance(eos, list) else [eos]
    if tokenizer.eos_token_id is None or tokenizer.eos_token_id not in stops:
        yield Problem(
            "generation",
            "generation_config.json",
            "eos_token_id",
            f"expected the tokenizer's end of turn {tokenizer.eos_token!r} ({tokenizer.eos_token_id}) among the stop "
            f"tokens, or generation runs on past the answer; found {eos!r}",
        )
    if tokenizer.pad_token_id is not None and settings.get("pad_token_id") != tokenizer.pad_token_id:
        yield Problem(
            "generation",
            "generation_config.json",
            "pad_token_id",
            f"expected the tokenizer's pad token id {tokenizer.pad_token_id}; found {settings.get('pad_token_id')!r}",
        )


RULES: tuple[Callable[[_Folder], Iterator[Problem]], ...] = (
    _architecture,
    _dtype,
    _image_tokens,
    _image_seq_length,
    _image_processor,
    _processor,
    _chat_template,
    _vocabulary,
    _generation,
)
