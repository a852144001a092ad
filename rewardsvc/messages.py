"""Protobuf <-> rewardsvc.types conversion, shared by the server and the client."""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf import json_format, struct_pb2

from rewardsvc.types import ErrorCode, Item, ItemError, Message, Result, Text
from rewardsvc.v1 import reward_pb2 as pb

_CODE_TO_PB = {
    ErrorCode.INVALID_ITEM: pb.INVALID_ITEM,
    ErrorCode.TIMEOUT: pb.TIMEOUT,
    ErrorCode.RESOURCE_EXHAUSTED: pb.RESOURCE_EXHAUSTED,
    ErrorCode.INTERNAL: pb.INTERNAL,
    ErrorCode.CANCELLED: pb.CANCELLED,
}
_PB_TO_CODE = {v: k for k, v in _CODE_TO_PB.items()}

#: The RewardService's full name: also the gRPC health service name of the whole server.
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RewardService"].full_name


def health_service(scorer: str) -> str:
    """The gRPC health service name of one hosted scorer: SERVING once it can score (for
    `rewardsvc health --scorer`, grpc_health_probe -service, a kubelet gRPC probe's `service`)."""
    return f"{SERVICE_NAME}/{scorer}"


def _conv_to_pb(messages: list[Message]) -> pb.Conversation:
    return pb.Conversation(messages=[pb.Message(role=m.role, content=m.content) for m in messages])


def item_to_pb(item: Item) -> pb.Item:
    msg = pb.Item(id=item.id, steps=item.steps, metadata=item.metadata)
    if isinstance(item.prompt, str):
        msg.prompt_text = item.prompt
    else:
        msg.prompt_messages.CopyFrom(_conv_to_pb(item.prompt))
    if isinstance(item.response, str):
        msg.response_text = item.response
    else:
        msg.response_messages.CopyFrom(_conv_to_pb(item.response))
    if item.reference is not None:
        msg.reference = item.reference
    if item.group_id is not None:
        msg.group_id = item.group_id
    return msg


def _conv_from_pb(conv: pb.Conversation) -> list[Message]:
    return [Message(m.role, m.content) for m in conv.messages]


def item_from_pb(msg: pb.Item) -> Item:
    # Runs for every item of every request: plain text read directly, containers copied only when set.
    kind = msg.WhichOneof("prompt")
    prompt: Text = (msg.prompt_text if kind == "prompt_text" else "" if kind is None
                    else _conv_from_pb(msg.prompt_messages))
    kind = msg.WhichOneof("response")
    response: Text = (msg.response_text if kind == "response_text" else "" if kind is None
                      else _conv_from_pb(msg.response_messages))
    steps, metadata = msg.steps, msg.metadata
    return Item(
        id=msg.id,
        prompt=prompt,
        response=response,
        reference=msg.reference if msg.HasField("reference") else None,
        steps=list(steps) if steps else [],
        group_id=msg.group_id if msg.HasField("group_id") else None,
        metadata=dict(metadata) if metadata else {},
    )


def _text(value: str) -> str:
    # Lone surrogates are not valid UTF-8 and would fail protobuf serialisation.
    return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")


def _set_value(out: struct_pb2.Value, value: Any) -> None:
    """Write `value` into a google.protobuf.Value as JSON would carry it: JSON types only, finite
    numbers (others as their text), valid UTF-8, anything else as str(). Struct.update does the same
    walk in Python a layer up: this was most of a response's conversion time."""
    if value is None:
        out.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, (int, float)):
        try:
            f = float(value)
        except OverflowError:  # an int past a double's range
            f = math.inf
        if math.isfinite(f):
            out.number_value = f
        else:
            out.string_value = str(value)
    elif isinstance(value, str):
        out.string_value = _text(value)
    elif isinstance(value, dict):
        _fill(out.struct_value, value)
    elif isinstance(value, (list, tuple)):
        items = out.list_value
        items.SetInParent()
        for v in value:
            _set_value(items.values.add(), v)
    elif isinstance(value, bytes):
        out.string_value = value.decode("utf-8", "replace")
    else:
        out.string_value = _text(str(value))


def _fill(out: struct_pb2.Struct, data: dict[Any, Any]) -> None:
    if not data:
        out.SetInParent()  # present though empty (a key written below does this too)
        return
    fields = out.fields
    for k, v in data.items():
        key = k if type(k) is str and k.isascii() else _text(str(k))
        # Most details are short ASCII strings and finite floats (verdicts, answers, probabilities):
        # set directly, a third of the general path's cost per result.
        if type(v) is str and v.isascii():
            fields[key].string_value = v
        elif type(v) is float and math.isfinite(v):
            fields[key].number_value = v
        else:
            _set_value(fields[key], v)


def dict_to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if data:
        _fill(s, data)
    return s


def struct_to_dict(s: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(s) if s.fields else {}


def result_to_pb(result: Result) -> pb.Result:
    msg = pb.Result()
    fill_result(msg, result)
    return msg


def fill_result(msg: pb.Result, result: Result) -> None:
    """Write `result` into an empty `msg` in place (`response.results.add()`: a message handed to a
    constructor or `append` is copied, a cost per result)."""
    msg.id = _text(result.id)
    msg.score = result.score if math.isfinite(result.score) else 0.0
    if result.step_scores:
        msg.step_scores.extend([float(x) for x in result.step_scores])
    _fill(msg.details, result.details)
    if result.error is not None:
        msg.error.code = _CODE_TO_PB[result.error.code]
        msg.error.message = _text(result.error.message)


def result_from_pb(msg: pb.Result) -> Result:
    error = None
    if msg.HasField("error") and msg.error.code != pb.ERROR_CODE_UNSPECIFIED:
        error = ItemError(_PB_TO_CODE.get(msg.error.code, ErrorCode.INTERNAL), msg.error.message)
    return Result(
        id=msg.id,
        score=msg.score,
        step_scores=list(msg.step_scores),
        details=struct_to_dict(msg.details),
        error=error,
    )


def options_to_struct(options: dict[str, Any]) -> struct_pb2.Struct:
    return dict_to_struct(json.loads(json.dumps(options)))


def options_from_struct(s: struct_pb2.Struct) -> dict[str, Any]:
    """Struct numbers are all doubles; integral values come back as ints so int options parse."""

    def fix(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
            return int(v)
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    try:
        data = struct_to_dict(s)
    except (ValueError, TypeError) as exc:  # e.g. Infinity/NaN, which JSON can't carry
        from rewardsvc.errors import InvalidOptionsError

        raise InvalidOptionsError(f"options are not valid JSON values: {exc}") from None
    return fix(data)
