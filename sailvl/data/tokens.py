"""Special tokens shared by tokenizers, templates and the model (InternVL and ChatML conventions)."""

from __future__ import annotations

IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"  # one per visual token; the model writes image features at these positions
IMAGE_PLACEHOLDER = "<image>"  # what records and prompts write where an image goes; expanded before tokenizing
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"
IMAGE_TOKENS = (IMG_START, IMG_END, IMG_CONTEXT)
CHAT_TOKENS = (IM_START, IM_END, END_OF_TEXT)
IGNORE_INDEX = -100  # label value the loss skips
