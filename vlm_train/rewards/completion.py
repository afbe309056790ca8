"""What a reward function receives as one completion -> assistant texts and structured tool calls.

TRL passes each completion as a string (standard datasets) or as a list of message dicts
(conversational datasets). With tools, the list holds the whole rollout: assistant turns, tool
turns (``{"role": "tool", ...}``) and the assistant's continuation; TRL moves a parsed tool call
out of the text into the message's ``tool_calls``.
"""

from __future__ import annotations

from collections.abc import Mapping


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                if part.get("type", "text") == "text":
                    out.append(part["text"])
        return "".join(out)
    return ""


def rollout_parts(completion: object) -> tuple[list[str], list[object]]:
    """Assistant texts in order (at least one, maybe "") and the structured tool calls of a completion.

    Tool and user messages are skipped: their text is the environment's, not the policy's.
    Anything unrecognised reads as an empty completion.
    """
    if isinstance(completion, str):
        return [completion], []
    if isinstance(completion, Mapping):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        return [""], []
    texts: list[str] = []
    calls: list[object] = []
    for msg in completion:
        if isinstance(msg, str):
            texts.append(msg)
            continue
        if not isinstance(msg, Mapping) or msg.get("role", "assistant") != "assistant":
            continue
        texts.append(_content_text(msg.get("content")))
        tc = msg.get("tool_calls")
        if isinstance(tc, (list, tuple)):
            calls.extend(tc)
    return texts or [""], calls
