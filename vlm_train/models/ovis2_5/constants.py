"""Ovis2.5 placeholder ids and fixed texts (docs/models.md, "Ovis2.5").

The placeholders are negative so they can never collide with a real vocabulary id; the model
replaces them with visual embeddings before the language model sees them.
"""

from __future__ import annotations

IMAGE_PLACEHOLDER = -200  # "<image>" in raw text, before expansion
VIDEO_PLACEHOLDER = -201  # "<video>" in raw text, before expansion
VISUAL_ATOM_ID = -300
IMAGE_START_ID = -301
IMAGE_END_ID = -302
VIDEO_START_ID = -303
VIDEO_END_ID = -304
# Indicator placeholder -> offset from the first of the 4 indicator rows at the end of vte.
INDICATOR_IDS = (IMAGE_START_ID, IMAGE_END_ID, VIDEO_START_ID, VIDEO_END_ID)
NUM_INDICATORS = 4

EMPTY_THINK = "<think>\n\n</think>\n\n"
THINK_END = "</think>"
