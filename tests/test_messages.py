"""Results to protobuf: details become a google.protobuf.Struct as JSON would carry them."""

from __future__ import annotations

import math

from rewardsvc import messages
from rewardsvc.types import ErrorCode, ItemError, Result


class _Opaque:
    def __str__(self) -> str:
        return "opaque"


def test_details_of_every_json_shape_and_a_few_that_are_not() -> None:
    details = {
        "verdict": "correct", "probability": 0.25, "steps": 3, "ok": True, "none": None,
        "nested": {"list": [1, "two", [3.5, {"deep": False}]], "empty": {}, "nothing": []},
        "tuple": (1, 2), "nan": math.nan, "inf": -math.inf, "huge": 10**400, "bytes": b"ab\xff",
        "lone surrogate": "a\ud800b", "object": _Opaque(), 7: "int key",
    }
    msg = messages.result_to_pb(Result("id-1", 0.5, [0.1, 0.2], details))
    msg.SerializeToString()  # valid UTF-8 throughout, or protobuf refuses
    back = messages.result_from_pb(msg)
    assert back.details == {
        "verdict": "correct", "probability": 0.25, "steps": 3.0, "ok": True, "none": None,
        "nested": {"list": [1.0, "two", [3.5, {"deep": False}]], "empty": {}, "nothing": []},
        "tuple": [1.0, 2.0], "nan": "nan", "inf": "-inf", "huge": str(10**400), "bytes": "ab\ufffd",
        "lone surrogate": "a?b", "object": "opaque", "7": "int key",
    }
    assert back.step_scores == [0.1, 0.2] and back.score == 0.5


def test_a_non_finite_score_an_error_and_empty_details() -> None:
    msg = messages.result_to_pb(Result("x\ud800", math.nan, error=ItemError(ErrorCode.TIMEOUT, "late \ud800")))
    msg.SerializeToString()
    assert msg.score == 0.0 and msg.HasField("details") and not msg.details.fields
    back = messages.result_from_pb(msg)
    assert back.error == ItemError(ErrorCode.TIMEOUT, "late ?") and back.id == "x?"


def test_items_round_trip_in_both_text_forms() -> None:
    from rewardsvc.types import Item, Message

    items = [
        Item(id="t", prompt="2+2?", response="4", reference="4", steps=["a", "b"], group_id="g",
             metadata={"data_source": "gsm8k"}),
        Item(id="c", prompt=[Message("system", "be brief"), Message("user", "hi")],
             response=[Message("assistant", "hello")]),
        Item(id="empty"),
        Item(id="blank reference", reference="", group_id=""),  # set but empty stays set, not None
    ]
    for item in items:
        assert messages.item_from_pb(messages.item_to_pb(item)) == item
