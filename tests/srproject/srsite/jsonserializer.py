"""A JSON serializer for ``SCHEDULER_SERIALIZER``: scrapy-redis takes any
module with ``loads`` and ``dumps``, but the standard ``json`` module fails
on ``Request.to_dict()`` (its body and headers are bytes), so bytes are
written as text here."""

import json
from typing import Any


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_text(v) for v in value]
    return value


def dumps(obj: Any) -> str:
    return json.dumps(_text(obj))


def loads(data: bytes | str) -> Any:
    return json.loads(data)
