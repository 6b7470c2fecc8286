"""Tagged JSON values: what ``meta`` and ``cb_kwargs`` carry between nodes.

A value is stored as itself when it is plain JSON that reads back as the same
Python value: ``str``, ``bool``, ``None``, ``int`` below 2**63 in size, a
finite ``float``, a ``list``, and a ``dict`` whose keys are all strings and
none is ``"$t"``. Anything else is a *tagged* object, a JSON object whose
``"$t"`` names the type::

    {"$t": "tuple", "v": [...]}            also "set", "frozenset"
    {"$t": "bytes", "v": "<base64>"}       also "bytearray"
    {"$t": "dict", "v": [[key, value], ...]}   a dict with a non-string or "$t" key
    {"$t": "int", "v": "<hex>"}            an int of 2**63 or more in size
    {"$t": "float", "v": "nan"}            also "inf", "-inf"
    {"$t": "datetime", "v": "<ISO 8601>"}  plus "tz": "<IANA name>" for a
                                           ZoneInfo, "fold": 1 if set
    {"$t": "date", "v": ...}, {"$t": "time", "v": ...}      ISO 8601
    {"$t": "timedelta", "v": [days, seconds, microseconds]}
    {"$t": "decimal", "v": "<str>"}, {"$t": "uuid", "v": "<hex>"}
    {"$t": "item", "c": "<module>:<qualname>", "v": {field: value, ...}}
                                           also "dataclass", "attrs"; "enum"
                                           has the member's value in "v"
    {"$t": "unstorable", "type": ..., "repr": ..., "path": ...}
                                           only in dead letters; never decodes

Every JSON object with a ``"$t"`` key is a tag, and a dict that has a
``"$t"`` key is itself stored as a "dict" tag, so a user's dict that looks
like a tag reads back as that dict. Lone surrogates in strings are kept by
the request codec (its JSON escapes them).

Classes (Items, dataclasses, attrs classes, enums) are encoded and loaded
only when the allow-list holds them (``crawler.allowlist``); a stored class
outside it is refused before anything is imported.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import math
import uuid
import zoneinfo
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import attrs
from scrapy import Item

from crawler.allowlist import AllowList, load_class
from crawler.exceptions import BadEntry, CrawlerError

_INT_LIMIT = 2**63
_TAG = "$t"


class UnstorableValue(CrawlerError, ValueError):
    """Raised when a request's ``meta`` or ``cb_kwargs`` holds a value that
    cannot be stored as JSON; ``path`` names it (``meta['item']['price']``)."""

    def __init__(self, path: str, value: Any, advice: str) -> None:
        self.path = path
        self.type_name = type(value).__name__
        super().__init__(f"{path} is a {self.type_name} ({advice})")


def is_plain(value: Any) -> bool:
    """True if *value* is stored as itself (see the module docstring)."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return -_INT_LIMIT < value < _INT_LIMIT
    if t is float:
        return math.isfinite(value)
    if t is dict:
        if _TAG in value:
            return False
        for k, v in value.items():
            # Strings and ints inline: the common meta is a few of them.
            tv = type(v)
            if type(k) is not str or not (
                tv is str or (tv is int and -_INT_LIMIT < v < _INT_LIMIT) or is_plain(v)
            ):
                return False
        return True
    if t is list:
        return all(map(is_plain, value))
    return False


_PLAIN_ADVICE = (
    "meta and cb_kwargs can carry JSON types, bytes, tuples, sets, dates and times, "
    "Decimal, UUID, and Items, dataclasses, attrs objects and enums of allow-listed "
    "classes; keep other objects out of them"
)


def _simple(tag: str, fn: Any) -> Any:
    return lambda value: {_TAG: tag, "v": fn(value)}


def _datetime(value: dt.datetime) -> dict[str, Any]:
    out: dict[str, Any] = {_TAG: "datetime", "v": value.isoformat()}
    if isinstance(value.tzinfo, zoneinfo.ZoneInfo):
        out["tz"] = value.tzinfo.key
    if value.fold:
        out["fold"] = 1
    return out


def _b64(value: bytes | bytearray) -> str:
    return base64.b64encode(value).decode("ascii")


_LEAVES = {
    bytes: _simple("bytes", _b64),
    bytearray: _simple("bytearray", _b64),
    dt.datetime: _datetime,
    dt.date: _simple("date", dt.date.isoformat),
    dt.time: _simple("time", dt.time.isoformat),
    dt.timedelta: _simple("timedelta", lambda v: [v.days, v.seconds, v.microseconds]),
    Decimal: _simple("decimal", str),
    uuid.UUID: _simple("uuid", lambda v: v.hex),
}


def encode_value(value: Any, path: str, allowed: AllowList, lenient: bool = False) -> Any:
    """The stored form of *value* (at *path*: ``meta``, ``cb_kwargs``), as
    ``Encoder.encode`` makes it, or *value* itself when it is plain. A value
    nested deeper than Python's recursion limit lets a node walk, or holding
    itself (a dict or list inside itself), cannot be stored, as any other
    such value (UnstorableValue; a placeholder when *lenient*)."""
    try:
        if is_plain(value):
            return value
        return Encoder(allowed, lenient).encode(value, path)
    except RecursionError:
        return Encoder(allowed, lenient)._fail(
            value,
            path,
            "nested too deeply to store (hundreds of levels), or it contains itself; "
            "keep such values out of meta and cb_kwargs",
        )


class Encoder:
    """Turns a value into its stored form. *lenient* (for dead letters)
    tags classes outside the allow-list anyway (decoding still refuses them)
    and stores what cannot be stored as an "unstorable" tag instead of raising."""

    def __init__(self, allowed: AllowList, lenient: bool = False) -> None:
        self.allowed = allowed
        self.lenient = lenient

    def encode(self, value: Any, path: str) -> Any:
        t = type(value)
        if t is str or t is bool or value is None:
            return value
        if t is int:
            return value if -_INT_LIMIT < value < _INT_LIMIT else {_TAG: "int", "v": hex(value)}
        if t is float:
            return value if math.isfinite(value) else {_TAG: "float", "v": repr(value)}
        if t is list:
            return [self.encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if t is dict:
            return self._dict(value, path)
        if t is tuple or t is set or t is frozenset:
            items: Iterable[Any] = value if t is tuple else _ordered(value)
            return {
                _TAG: t.__name__,
                "v": [self.encode(v, f"{path}[{i}]") for i, v in enumerate(items)],
            }
        leaf = _LEAVES.get(t)
        if leaf is not None:
            return leaf(value)
        return self._object(value, path)

    def _dict(self, value: dict[Any, Any], path: str) -> Any:
        if _TAG not in value and all(type(k) is str for k in value):
            return {k: self.encode(v, f"{path}[{k!r}]") for k, v in value.items()}
        pairs = [
            [self.encode(k, f"{path} (a key)"), self.encode(v, f"{path}[{k!r}]")]
            for k, v in value.items()
        ]
        return {_TAG: "dict", "v": pairs}

    def _object(self, value: Any, path: str) -> Any:
        cls = type(value)
        if isinstance(value, Item):
            kind, fields = "item", {k: self.encode(v, f"{path}[{k!r}]") for k, v in value.items()}
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            kind, fields = "dataclass", self._attributes(value, dataclasses.fields(value), path)
        elif attrs.has(cls):
            kind, fields = "attrs", self._attributes(value, attrs.fields(cls), path)
        elif isinstance(value, enum.Enum):
            return self._class_tag(value, "enum", self.encode(value.value, f"{path}.value"), path)
        elif isinstance(value, str | int | float):
            # lxml's string results (CrawlSpider's link_text) and the like:
            # stored, as JSON would, as the plain value.
            base = str if isinstance(value, str) else int if isinstance(value, int) else float
            return self.encode(getattr(base, f"__{base.__name__}__")(value), path)
        else:
            return self._fail(value, path, f"not storable between nodes; {_PLAIN_ADVICE}")
        return self._class_tag(value, kind, fields, path)

    def _attributes(self, value: Any, fields: Iterable[Any], path: str) -> dict[str, Any]:
        out = {}
        for f in fields:
            where = f"{path}.{f.name}"
            try:
                attribute = getattr(value, f.name)
            except AttributeError:  # a dataclass field(init=False) never set
                out[f.name] = self._fail(
                    value,
                    where,
                    "that field is not set; set it before the request is made, or keep "
                    "the object out of meta and cb_kwargs",
                )
                continue
            out[f.name] = self.encode(attribute, where)
        return out

    def _class_tag(self, value: Any, kind: str, fields: Any, path: str) -> Any:
        cls = type(value)
        module, qualname = cls.__module__, cls.__qualname__
        if "<locals>" in qualname or module == "__main__":
            where = "in a function" if "<locals>" in qualname else "in __main__"
            return self._fail(
                value,
                path,
                f"class {qualname} is defined {where}, so other nodes cannot load it by "
                "name; define it at the top level of a project module",
            )
        if not self.lenient and not self.allowed.allows(module, qualname):
            return self._fail(
                value,
                path,
                f"class {module}.{qualname} is not in the meta class allow-list; add it "
                "or its module to CRAWLER_META_CLASSES",
            )
        return {_TAG: kind, "c": f"{module}:{qualname}", "v": fields}

    def _fail(self, value: Any, path: str, advice: str) -> Any:
        if not self.lenient:
            raise UnstorableValue(path, value, advice)
        try:
            text = repr(value)[:200]
        except Exception:  # a broken __repr__ must not lose the dead letter
            text = object.__repr__(value)
        cls = type(value)
        name = f"{cls.__module__}.{cls.__qualname__}"
        return {_TAG: "unstorable", "type": name, "repr": text, "path": path}


def _ordered(values: Iterable[Any]) -> list[Any]:
    # A set's order varies between processes; sorting (where it can) keeps
    # the stored form, and so the request's JSON, the same for the same set.
    try:
        return sorted(values)
    except TypeError:
        return list(values)


class Decoder:
    """Turns a stored value back into what was stored; raises BadEntry with
    the reason for a tag it cannot decode or a class outside the allow-list."""

    def __init__(self, allowed: AllowList) -> None:
        self.allowed = allowed

    def decode(self, value: Any) -> Any:
        t = type(value)
        if t is list:
            return [self.decode(v) for v in value]
        if t is not dict:
            return value
        if _TAG not in value:
            return {k: self.decode(v) for k, v in value.items()}
        tag = value[_TAG]
        handler = _TAGS.get(tag) if isinstance(tag, str) else None
        if handler is None:
            raise BadEntry(f"unknown value tag {tag!r}")
        return handler(self, value)

    def _items(self, value: dict[str, Any]) -> list[Any]:
        v = value.get("v")
        if not isinstance(v, list):
            raise BadEntry(f"tag {value[_TAG]!r} holds no list")
        return [self.decode(x) for x in v]

    def _dict(self, value: dict[str, Any]) -> dict[Any, Any]:
        return {k: v for k, v in self._items(value)}

    def _object(self, value: dict[str, Any]) -> Any:
        kind = value[_TAG]
        cls = load_class(self.allowed, value.get("c"), kind)
        if kind == "enum":
            return cls(self.decode(value.get("v")))
        fields = self.decode(value.get("v"))
        if not isinstance(fields, dict):
            raise BadEntry(f"{kind} {value.get('c')!r} holds no fields")
        if kind == "item":
            return cls(fields)
        # As stored, without running __init__, __post_init__ or converters
        # a second time on values they already made.
        obj = cls.__new__(cls)
        for name, field_value in fields.items():
            object.__setattr__(obj, name, field_value)
        return obj

    def _unstorable(self, value: dict[str, Any]) -> Any:
        raise BadEntry(
            f"{value.get('path')} was a {value.get('type')} that could not be stored "
            f"({str(value.get('repr'))[:100]}); the request cannot be rebuilt from Redis"
        )


def _datetime_of(_: Decoder, value: dict[str, Any]) -> dt.datetime:
    result = dt.datetime.fromisoformat(value["v"])
    if "tz" in value:
        result = result.replace(tzinfo=zoneinfo.ZoneInfo(value["tz"]))
    return result.replace(fold=1) if value.get("fold") else result


def _leaf(fn: Any) -> Any:
    return lambda _, value: fn(value["v"])


def _bytes(v: str) -> bytes:
    return base64.b64decode(v, validate=True)


_TAGS: dict[str, Any] = {
    "tuple": lambda d, v: tuple(d._items(v)),
    "set": lambda d, v: set(d._items(v)),
    "frozenset": lambda d, v: frozenset(d._items(v)),
    "dict": Decoder._dict,
    "bytes": _leaf(_bytes),
    "bytearray": _leaf(lambda v: bytearray(_bytes(v))),
    "int": _leaf(lambda v: int(v, 16)),
    "float": _leaf(lambda v: float(v) if v in ("nan", "inf", "-inf") else _bad_float(v)),
    "datetime": _datetime_of,
    "date": _leaf(dt.date.fromisoformat),
    "time": _leaf(dt.time.fromisoformat),
    "timedelta": _leaf(lambda v: dt.timedelta(days=v[0], seconds=v[1], microseconds=v[2])),
    "decimal": _leaf(Decimal),
    "uuid": _leaf(uuid.UUID),
    "item": Decoder._object,
    "dataclass": Decoder._object,
    "attrs": Decoder._object,
    "enum": Decoder._object,
    "unstorable": Decoder._unstorable,
}


def _bad_float(v: Any) -> float:
    raise BadEntry(f"float tag holds {v!r}")
