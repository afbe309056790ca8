"""Qwen3-VL tokens and chat template (docs/models.md, "Qwen3-VL").

Qwen3-VL is Qwen3's ChatML with vision spans: an image is ``<|vision_start|>`` +
``<|image_pad|>`` x (its merged patches) + ``<|vision_end|>``, inline (no newline after it).
Tool calls are Qwen3's ``<tool_call>{json}</tool_call>``; a tool result is a user turn wrapping
the result in ``<tool_response>\\n...\\n</tool_response>`` (consecutive tool messages share one
user turn in the official template; our samples have one tool message per call). This module
holds the Jinja template of that shape, used for the tiny checkpoint and for the golden tests
against the HF processor; the input builder renders the same text in Python.
"""

from __future__ import annotations

# Qwen3's special tokens in their official order, so the vision tokens keep their relative
# position (<|vision_start|> 151652, <|image_pad|> 151655 in the real vocabulary).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
]
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"

# The rendering of the Qwen3-VL Instruct template for content lists, without the tools system
# prompt (our samples carry no tool schema): each message is <|im_start|>{role}\n{content}<|im_end|>\n,
# image items <|vision_start|><|image_pad|><|vision_end|>, tool messages inside a user turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}"
    "{{ '<|im_start|>user\\n<tool_response>\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'video' %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'tool' %}{{ '\\n</tool_response><|im_end|>\\n' }}"
    "{% else %}{{ '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
