"""InternVL3.5 (-HF) tokens and chat template (docs/models.md, "InternVL3.5").

The Python renderer ``render`` and the Jinja ``CHAT_TEMPLATE`` produce the same text; the
renderer also reports character spans of every assistant turn so labels can be derived
from the tokenizer's offsets (the official rule: assistant content and its ``<|im_end|>``
are learned, everything else is -100).
"""

from __future__ import annotations

# Qwen3 base specials first, then InternVL's additions in their official order, so that
# <IMG_CONTEXT> keeps its relative position (151671 in the real vocabulary).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>",
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
    "<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>",
    "<video>",
]
TOKENIZER_EXTRAS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
IMAGE_TOKEN = "<IMG_CONTEXT>"
VIDEO_TOKEN = "<video>"

# Jinja chat template of the -HF checkpoints' shape: each message is
# <|im_start|>{role}\n{content}<|im_end|>\n; image items render as <IMG_CONTEXT>\n,
# video items as <video>\n, text items verbatim.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif item['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

R1_SYSTEM_PROMPT = (
    "You are an AI assistant that rigorously follows this response protocol:\n\n"
    "1. First, conduct a detailed analysis of the question. Consider different angles, potential "
    "solutions, and reason through the problem step-by-step. Enclose this entire thinking process "
    "within <think> and </think> tags.\n\n"
    "2. After the thinking section, provide a clear, concise, and direct answer to the user's "
    "question. Separate the answer from the think section with a newline.\n\n"
    "Ensure that the thinking process is thorough but remains focused on the query. The final "
    "answer should be standalone and not reference the thinking section."
)
