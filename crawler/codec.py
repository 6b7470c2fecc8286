"""Requests and items as JSON, never pickle.

A request is stored as a compact JSON object: fields equal to their default
are left out, bytes are text (``body`` as UTF-8, or ``body_b64``). Decoding
resolves callbacks by name on the spider only and imports no class that is
not in ``CRAWLER_REQUEST_CLASSES``, so nothing stored in Redis can make a
node run code.
"""

from __future__ import annotations

import base64
import inspect
import json
from typing import Any

from itemadapter import ItemAdapter
from scrapy import Request, Spider
from scrapy.utils.misc import load_object
from scrapy.utils.serialize import ScrapyJSONEncoder

from crawler.exceptions import BadEntry

_DEFAULTS: dict[str, Any] = {
    "callback": None,
    "errback": None,
    "method": "GET",
    "headers": {},
    "body": b"",
    "cookies": {},
    "meta": {},
    "encoding": "utf-8",
    "priority": 0,
    "dont_filter": False,
    "flags": [],
    "cb_kwargs": {},
}
_encoder = ScrapyJSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _method_name(spider: Spider, func: Any) -> Any:
    """The name *func* has on *spider* if it is one of its bound methods
    (as ``Request.to_dict`` finds it), else ``_NOT_FOUND``."""
    if func is None:
        return None
    own = getattr(func, "__func__", None)
    if own is not None and getattr(func, "__self__", None) is spider:
        name = own.__name__
        if getattr(getattr(spider, name, None), "__func__", None) is own:
            return name
    return _NOT_FOUND


_NOT_FOUND = object()


def _request_dict(request: Request, spider: Spider) -> dict[str, Any]:
    """``request.to_dict(spider=spider)``. For a plain Request whose callbacks
    are the spider's methods by their own names (nearly every request), it
    is built here: ``to_dict`` looks each callback up with
    ``inspect.getmembers`` on the spider, a few percent of a node's time."""
    if type(request) is Request:
        callback = _method_name(spider, request.callback)
        errback = _method_name(spider, request.errback)
        if callback is not _NOT_FOUND and errback is not _NOT_FOUND:
            d = {
                "url": request.url,
                "callback": callback,
                "errback": errback,
                "headers": dict(request.headers),
            }
            for attr in Request.attributes:
                d.setdefault(attr, getattr(request, attr))
            return d
    return request.to_dict(spider=spider)


def encode_request(request: Request, spider: Spider) -> str:
    """JSON for *request*. Raises ValueError/TypeError if it cannot be stored."""
    d = _request_dict(request, spider)
    out: dict[str, Any] = {}
    for key, value in d.items():
        if key in _DEFAULTS and value == _DEFAULTS[key]:
            continue
        if key == "headers":
            value = {_text(k): [_text(v) for v in vs] for k, vs in value.items()}
        elif key == "body":
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                key, value = "body_b64", base64.b64encode(value).decode("ascii")
        out[key] = value
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_request(data: str | bytes, spider: Spider, allowed_classes: frozenset[str]) -> Request:
    """The request in *data*; raises BadEntry with the reason if it is not one."""
    try:
        return _decode(data, spider, allowed_classes)
    except BadEntry:
        raise
    except Exception as exc:  # whatever else garbage makes the decoding raise
        raise BadEntry(f"invalid request: {type(exc).__name__}: {exc}") from None


def _decode(data: str | bytes, spider: Spider, allowed_classes: frozenset[str]) -> Request:
    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEntry(f"not JSON: {exc}") from None
    if not isinstance(d, dict) or not isinstance(d.get("url"), str):
        raise BadEntry("not a JSON object with a string 'url'")
    cls_name = d.pop("_class", None)
    request_cls: type[Request] = Request
    if cls_name is not None and not isinstance(cls_name, str):
        raise BadEntry("'_class' is not a string")
    if cls_name is not None:
        if cls_name not in allowed_classes:
            raise BadEntry(f"request class {cls_name!r} is not in CRAWLER_REQUEST_CLASSES")
        request_cls = load_object(cls_name)
    if "body_b64" in d:
        d["body"] = base64.b64decode(d.pop("body_b64"))
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if key not in request_cls.attributes:
            raise BadEntry(f"unknown field {key!r}")
        kwargs[key] = value
    for name in ("callback", "errback"):
        if kwargs.get(name) is not None:
            method = spider_method(spider, kwargs[name])
            if method is None:
                raise BadEntry(f"{name} {kwargs[name]!r} is not a method of spider {spider.name!r}")
            kwargs[name] = method
    try:
        return request_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise BadEntry(f"invalid request: {exc}") from None


def spider_method(spider: Spider, name: Any) -> Any:
    """The public method *name* of *spider*, or None: never a class, an
    attribute holding some other callable, or a private or dunder name."""
    if not isinstance(name, str) or not name or name.startswith("_"):
        return None
    method = getattr(spider, name, None)
    if inspect.ismethod(method) and method.__self__ is spider:
        return method
    return None


def encode_item(item: Any) -> str:
    return _encoder.encode(ItemAdapter(item).asdict())
