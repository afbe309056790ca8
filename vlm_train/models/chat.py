"""A family's chat format as data: the texts that open and close turns, wrap tool calls and
tool responses, and mark thinking. Rollouts, inference, GRPO rows and data checks render and
split text with this object, never with literal tokens (docs/design.md, "The family contract").
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ChatFormat:
    """ChatML-style turn texts of one family.

    Attributes:
        turn_start: opens a turn; the role and a newline follow (``<|im_start|>``).
        turn_end: closes a turn (``<|im_end|>``); a single special token.
        eos_texts: further texts generation may end on, stripped from decoded completions.
        think_open, think_close: the thinking markers.
        empty_think: what an assistant header carries when thinking is off ("" when nothing).
        tool_call_open, tool_call_close: wrap a tool call's JSON.
        tool_response_open, tool_response_close: wrap a tool response inside a user turn.
        budget_stop_text: appended verbatim when a thinking budget runs out before
            ``think_close``. The default is the text of the model card that defines the protocol
            (docs/models.md, "Thinking budget"); rollouts use the same protocol for every family.
    """

    turn_start: str = "<|im_start|>"
    turn_end: str = "<|im_end|>"
    eos_texts: tuple[str, ...] = ("<|endoftext|>",)
    think_open: str = "<think>"
    think_close: str = "</think>"
    empty_think: str = ""
    tool_call_open: str = "<tool_call>"
    tool_call_close: str = "</tool_call>"
    tool_response_open: str = "<tool_response>"
    tool_response_close: str = "</tool_response>"
    budget_stop_text: str = (
        "\n\nConsidering the limited time by the user, I have to give the solution based on the "
        "thinking directly now.\n</think>\n\n"
    )

    def header(self, role: str) -> str:
        """The text that opens a ``role`` turn."""
        return f"{self.turn_start}{role}\n"

    def turn(self, role: str, body: str) -> str:
        """One whole turn: header, body, turn end and the newline after it."""
        return f"{self.header(role)}{body}{self.turn_end}\n"

    def assistant_header(self, enable_thinking: bool = False) -> str:
        """The generation prompt's tail: the assistant header, plus the empty think block
        when thinking is off and the family writes one."""
        return self.header("assistant") + ("" if enable_thinking else self.empty_think)

    def tool_call(self, name: str, arguments: dict) -> str:
        """A tool call as the model writes it (name/arguments JSON inside the call tags; docs/models.md,
        "Chat templates, tool calls and tool responses")."""
        return f"{self.tool_call_open}{json.dumps({'name': name, 'arguments': arguments})}{self.tool_call_close}"

    def tool_response_open_text(self) -> str:
        """Text before a tool response's content: a user turn opening the response tag."""
        return f"{self.header('user')}{self.tool_response_open}\n"

    def tool_response_close_text(self) -> str:
        """Text after a tool response's content, closing the tag and the user turn."""
        return f"\n{self.tool_response_close}{self.turn_end}\n"

    def strip_completion(self, text: str) -> str:
        """A decoded completion up to its turn end, end-of-sequence texts removed."""
        text = text.split(self.turn_end)[0]
        for t in self.eos_texts:
            text = text.replace(t, "")
        return text
