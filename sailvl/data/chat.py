"""The prompt layout every sailvl model is trained, served and exported with: one chat template, one image rule.

Records and `sailvl serve` write an image as the `<image>` placeholder inside string content; OpenAI clients send
it as an `image_url` part, which vLLM hands to the chat template as `{"type": "image"}`. Both must become the
same tokens, so the layout is defined once, in the terms transformers' `InternVLProcessor` and vLLM's InternVL
processor use:

1. The chat template (ChatML, as Qwen2 writes it) renders an image as `<IMG_CONTEXT>`: an image part as
   `<IMG_CONTEXT>\\n`, an `<image>` placeholder in string content as `<IMG_CONTEXT>` (the record's own newline
   follows it). `<image>\\nWhat is this?` and `[image, text "What is this?"]` render to the same text.
2. Each `<IMG_CONTEXT>` of the rendered prompt then becomes `<img>` + `<IMG_CONTEXT>` × (tokens per tile × tiles)
   + `</img>`: what vLLM's prompt replacement and the HF processor write (`sailvl.data.templates` does it for
   training and `sailvl serve`).

The template is set on every tokenizer sailvl trains (the tiny preset's, a language checkpoint's, an `init`
checkpoint's), so every export carries it and `sailvl check-export` can prove rule 1 on the exported file.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase

from sailvl.data.tokens import IMAGE_PLACEHOLDER, IMG_CONTEXT

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] | replace('<image>', '<IMG_CONTEXT>') -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] in ['image', 'image_url'] -%}{{- '<IMG_CONTEXT>\\n' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def with_chat_template(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """`tokenizer` with sailvl's chat template (in place; returned for chaining)."""
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def prompt_content(content: str) -> str:
    """Record content as the chat template receives it: `<image>` placeholders written as the image token."""
    return content.replace(IMAGE_PLACEHOLDER, IMG_CONTEXT)


def as_parts(content: str) -> list[dict[str, Any]]:
    """String content with `<image>` placeholders as the list of parts an OpenAI client (through vLLM) sends:
    `<image>\\nText` → `[{"type": "image"}, {"type": "text", "text": "Text"}]`."""
    parts: list[dict[str, Any]] = []
    for k, chunk in enumerate(content.split(IMAGE_PLACEHOLDER)):
        if k > 0:
            parts.append({"type": "image"})
            if not chunk.startswith("\n"):
                raise ValueError(f"an {IMAGE_PLACEHOLDER} placeholder must be followed by a newline; found {content!r}")
            chunk = chunk[1:]
        if chunk:
            parts.append({"type": "text", "text": chunk})
    return parts
