"""Plain data types shared by every layer: items in, results out.

The transport converts protobuf to and from these; scorers see only these. Nothing here imports
grpc or torch.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Message:
    """One chat turn."""

    role: str
    content: str


#: A prompt or a response: plain text, or chat messages.
Text = str | list[Message]


class ErrorCode(str, enum.Enum):
    """Why one item has no score. Same names as the proto's `ErrorCode`, lower-cased."""

    INVALID_ITEM = "invalid_item"
    TIMEOUT = "timeout"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    INTERNAL = "internal"
    CANCELLED = "cancelled"


@dataclass
class ItemError:
    code: ErrorCode
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


@dataclass
class Item:
    """One rollout to score. `reference` is ground truth (answer, tests, reference answer)."""

    id: str = ""
    prompt: Text = ""
    response: Text = ""
    reference: str | None = None
    steps: list[str] = field(default_factory=list)
    group_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def prompt_text(self) -> str:
        """The prompt as plain text (chat turns' contents joined by blank lines)."""
        return text_of(self.prompt)

    @property
    def response_text(self) -> str:
        """The response as plain text; for chat messages, the assistant turns' contents."""
        if isinstance(self.response, str):
            return self.response
        turns = [m.content for m in self.response if m.role == "assistant"] or [
            m.content for m in self.response
        ]
        return "\n\n".join(turns)


@dataclass
class Result:
    """The reward for one item. When `error` is set, `score` is 0 and means nothing."""

    id: str
    score: float = 0.0
    step_scores: list[float] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    error: ItemError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, item_id: str, code: ErrorCode, message: str, **details: Any) -> Result:
        return cls(id=item_id, error=ItemError(code, message), details=dict(details))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "score": self.score,
            "step_scores": list(self.step_scores),
            "details": self.details,
            "error": self.error.to_dict() if self.error else None,
        }


def text_of(text: Text) -> str:
    if isinstance(text, str):
        return text
    return "\n\n".join(m.content for m in text)


def messages_of(text: Text, role: str) -> list[Message]:
    """Chat messages for a prompt/response given as either form (plain text becomes one turn)."""
    if isinstance(text, str):
        return [Message(role, text)] if text else []
    return list(text)


# End-of-turn markers left on a response decoded with its special tokens (OpenRLHF's `query`,
# AReaL's completion): not part of what the model said.
_SPECIAL_TAIL = re.compile(r"(?:\s*(?:<\|[A-Za-z0-9_]{1,40}\|>|</s>|<eos>|<end_of_turn>"
                           r"|<\uff5cend\u2581of\u2581sentence\uff5c>))+\s*$")


def strip_special_tail(text: str) -> str:
    """`text` without trailing end-of-turn tokens (<|im_end|>, <|endoftext|>, <|eot_id|>, </s>, ...)."""
    return _SPECIAL_TAIL.sub("", text)


def content_text(content: Any, where: str = "content") -> str:
    """The text of a chat message's `content` as trainers send it: a string; None (a message that
    is only a tool call) as ""; a list of content blocks (OpenAI / Hugging Face multimodal form) as
    its text blocks joined by newlines, other blocks (images, audio) left out."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict) and isinstance(block.get("text"), str) and block.get("type", "text") == "text":
                parts.append(block["text"])
            elif not isinstance(block, dict):
                raise ValueError(f"{where}: a content block must be a string or an object, got {type(block).__name__}")
        return "\n".join(parts)
    raise ValueError(f"{where} must be a string, null or a list of content blocks, got {type(content).__name__}")


def message_from_json(m: Any, where: str = "message") -> Message:
    """One chat message from its JSON form. Besides `role` and `content` (see content_text), an
    assistant's `tool_calls` are written after its content, one `<tool_call>{"name": ..., "arguments":
    ...}</tool_call>` line each, so every scorer sees the actions taken; `reasoning_content` /
    `thinking` and other keys (name, tool_call_id) are not part of the scored text."""
    if isinstance(m, Message):
        return m
    if not isinstance(m, dict):
        raise ValueError(f"{where} must be an object with 'role' and 'content', got {type(m).__name__}")
    text = content_text(m.get("content"), f"{where}.content")
    calls = m.get("tool_calls") or []
    if not isinstance(calls, list):
        raise ValueError(f"{where}.tool_calls must be a list")
    lines = [text] if text else []
    for call in calls:
        fn = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            raise ValueError(f"{where}.tool_calls entries must be objects")
        body = json.dumps({"name": fn.get("name"), "arguments": fn.get("arguments")}, ensure_ascii=False, default=str)
        lines.append(f"<tool_call>{body}</tool_call>")
    return Message(str(m.get("role") or "user"), "\n".join(lines))


def _text_from_json(value: Any, field_name: str) -> Text:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return [message_from_json(m, f"{field_name}[{i}]") for i, m in enumerate(value)]
    raise ValueError(f"{field_name} must be a string or a list of chat messages, got {type(value).__name__}")


ITEM_FIELDS = ("id", "prompt", "response", "reference", "steps", "group_id", "metadata")


def item_from_dict(data: dict[str, Any]) -> Item:
    """Build an Item from its JSON form (the CLI's JSONL, the client's dict items).

    Raises ValueError naming the bad field, so callers can turn it into a per-item error.
    """
    if not isinstance(data, dict):
        raise ValueError(f"an item must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - set(ITEM_FIELDS)
    if unknown:
        raise ValueError(f"unknown item field(s) {sorted(unknown)}; item fields are {list(ITEM_FIELDS)}")
    steps = data.get("steps") or []
    if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
        raise ValueError("steps must be a list of strings")
    metadata = data.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("metadata must be an object of strings")
    reference = data.get("reference")
    if reference is not None and not isinstance(reference, str):
        # Structured references (code tests) travel as JSON text, as in the proto.
        import json

        reference = json.dumps(reference)
    group_id = data.get("group_id")
    return Item(
        id=str(data.get("id", "")),
        prompt=_text_from_json(data.get("prompt"), "prompt"),
        response=_text_from_json(data.get("response"), "response"),
        reference=reference,
        steps=list(steps),
        group_id=None if group_id is None else str(group_id),
        metadata={str(k): str(v) for k, v in metadata.items()},
    )
