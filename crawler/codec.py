"""Requests and items as JSON, never pickle.

A request is stored as a compact JSON object: fields equal to their default
are left out, bytes are text (``body`` as UTF-8, or ``body_b64``), and
``meta`` and ``cb_kwargs`` hold tagged values where plain JSON would not
read back as the same type (see ``crawler.values``). A string with a lone
surrogate is written as a JSON ``\\u`` escape, so the stored text is valid
UTF-8. Decoding resolves callbacks by name to methods bound to the running
spider only, and imports no request class outside ``CRAWLER_REQUEST_CLASSES``
and no class in ``meta`` outside the meta allow-list, so nothing stored in
Redis can make a node run code.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import sys
import types
import weakref
from typing import Any

from itemadapter import ItemAdapter
from scrapy import Request, Spider
from scrapy.utils.misc import load_object
from scrapy.utils.serialize import ScrapyJSONEncoder

from crawler import default_settings
from crawler.allowlist import allow_list
from crawler.exceptions import BadEntry
from crawler.values import Decoder, encode_value

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
_ascii_encoder = ScrapyJSONEncoder(separators=(",", ":"))
# Live objects of this node that a retry or redirect copies with the meta:
# Scrapy's HttpCacheMiddleware keeps the cached Response in "cached_response"
# while it revalidates; scrapy-playwright keeps the open browser tab in
# "playwright_page" (``playwright_include_page``). They mean nothing on
# another node, which opens its own.
_LOCAL_META = frozenset({"cached_response", "playwright_page"})
#: The entry field of a request's item origin (``decode_entry``).
_ORIGIN = "_o"
#: The origin of a start request (``start_urls``, ``start()``, a seed): its
#: entry says only "s"; the node that leases it derives the origin from the
#: request's fingerprint (``crawler.decoding``). 9 bytes, not 49.
START_ORIGIN = b"s"
#: Meta key of a start request while a node has it (never stored): a
#: redirect of it (RedirectMiddleware copies meta) is a start request too,
#: as plain Scrapy's keeps ``dont_filter``. Removed before its callback runs.
START_META = "_crawler_start"
#: Scrapy's meta key that lets a request past OffsiteMiddleware; a start
#: request's is START_META while a node has it (crawler.middleware).
ALLOW_OFFSITE = "allow_offsite"


def drop_start_mark(meta: dict[str, Any]) -> None:
    """Take the start mark (and the ``allow_offsite`` it set) off a request
    whose callback or errback is about to run: neither sees it, nor do the
    requests they make with its meta (``meta=response.meta``), which plain
    Scrapy dedupes and filters as any other."""
    meta.pop(START_META, None)
    if meta.get(ALLOW_OFFSITE) == START_META:
        del meta[ALLOW_OFFSITE]


def closable_local_objects(request: Request) -> list[Any]:
    """The live objects in *request*'s meta that a stored copy of it leaves
    out (``_LOCAL_META``) and that have a ``close`` method: scrapy-playwright's
    open tab. Once the copy is stored, nothing on this node uses them again
    (the node that fetches it opens its own), so they are to be closed here
    (``crawler.scheduler``)."""
    meta = request.meta
    if _LOCAL_META.isdisjoint(meta):
        return []
    found = (meta[key] for key in _LOCAL_META if key in meta)
    return [value for value in found if callable(getattr(value, "close", None))]


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _method_name(spider: Spider, func: Any) -> Any:
    """The name *func* has on *spider* if it is one of its bound methods
    (as ``Request.to_dict`` finds it, private and name-mangled ones
    included), else ``_NOT_FOUND``."""
    if func is None:
        return None
    own = getattr(func, "__func__", None)
    if own is not None and getattr(func, "__self__", None) is spider:
        name = own.__name__
        if name.startswith("__"):
            if name.endswith("__"):
                return _NOT_FOUND
            # A private ``__x`` of class ``C`` is ``_C__x`` on the instance.
            owner = own.__qualname__.rpartition(".")[0].rpartition(".")[2]
            name = f"_{owner.lstrip('_')}{name}"
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


def _request_fields(request: Request, spider: Spider, lenient: bool) -> dict[str, Any]:
    """The request's dict, its callbacks checked to resolve back on any node.
    *lenient*: a callback that does not is written as a name that never resolves."""
    try:
        d = _request_dict(request, spider)
    except ValueError as exc:
        if not lenient:
            raise ValueError(
                f"its callback or errback is not a method of spider {spider.name!r} ({exc}); "
                "use the spider's own methods (callback=self.parse_page)"
            ) from None
        d = _request_dict(request.replace(callback=None, errback=None), spider)
        for name in ("callback", "errback"):
            func = getattr(request, name)
            found = _method_name(spider, func)
            d[name] = f"<not a spider method: {func!r}>" if found is _NOT_FOUND else found
    for name in ("callback", "errback"):
        value = d.get(name)
        if value is not None and spider_method(spider, value) is None and not lenient:
            raise ValueError(
                f"its {name} {value!r} cannot be called by name on other nodes; use a "
                "method of the spider class (not a special __method__ or an attribute)"
            )
    return d


def _injected(value: Any) -> bool:
    """A page object scrapy-poet put into ``cb_kwargs`` on this node (a retry,
    web_poet's ``Retry`` included, copies them): the node that fetches the
    request again builds its own from its response."""
    web_poet = sys.modules.get("web_poet")
    return web_poet is not None and isinstance(value, web_poet.Injectable)


def _values(value: dict[str, Any], key: str, spider: Spider, lenient: bool) -> Any:
    if key == "meta" and (START_META in value or not _LOCAL_META.isdisjoint(value)):
        value = {k: v for k, v in value.items() if k not in _LOCAL_META and k != START_META}
    elif key == "cb_kwargs" and "web_poet" in sys.modules:
        value = {k: v for k, v in value.items() if not _injected(v)}
    return encode_value(value, key, allow_list(spider), lenient)


def encode_request(
    request: Request,
    spider: Spider,
    *,
    lenient: bool = False,
    origin: bytes | None = None,
    by_content: bool = False,
    made_by: bytes = b"",
) -> str:
    """JSON for *request*. Raises ValueError (UnstorableValue naming the key
    path and type, for ``meta`` and ``cb_kwargs``) if it cannot be stored.
    *lenient* (for dead letters) never raises for a value that cannot be
    stored: it keeps a placeholder that refuses to decode. *origin*: what
    its items' ids derive from, if not its fingerprint (``decode_entry``);
    *by_content*: a hash of the JSON itself (a ``dont_filter`` request) and
    of *made_by*, where it came from in the output of the callback that
    made it (``crawler.itemids.made_by``)."""
    d = _request_fields(request, spider, lenient)
    name = d.get("_class")
    if not lenient and isinstance(name, str) and not _readable_class(name, spider):
        raise ValueError(
            f"its class {name} is neither in CRAWLER_REQUEST_CLASSES nor in the project's "
            "packages, so no node would read it back; add it (or its module) to "
            "CRAWLER_REQUEST_CLASSES"
        )
    lost = _lost_attributes(request)
    if lost and not lenient:
        cls = type(request).__name__
        raise ValueError(
            f"its attribute{'s' if len(lost) > 1 else ''} {', '.join(map(repr, lost))} "
            f"{'are' if len(lost) > 1 else 'is'} not in {cls}.attributes, so another node "
            f"would rebuild it without {'them' if len(lost) > 1 else 'it'}; add "
            f"{'them' if len(lost) > 1 else 'it'} to {cls}.attributes (and to its "
            "__init__'s parameters), as Scrapy's Request.attributes docs describe"
        )
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
        elif key == "meta" or key == "cb_kwargs":
            value = _values(value, key, spider, lenient)
        out[key] = value
    _relative_referer(out)
    if by_content and origin is None:
        # The same for the same request made again (a crash replay of the
        # callback that made it), another for any other.
        text = _dumps(out, lenient)
        # *made_by* tells identical requests one callback made apart (plain
        # Scrapy fetches each, and keeps the items of each).
        data = b"dont_filter\0" + made_by + text.encode("utf-8", "surrogatepass")
        origin = hashlib.sha1(data).digest()
        origin = origin[:8]
    if origin is not None:
        out[_ORIGIN] = "s" if origin == START_ORIGIN else origin.hex()
    return _dumps(out, lenient)


def _lost_attributes(request: Request) -> list[str]:
    """The public attributes a Request subclass's instance holds that its
    ``attributes`` do not name: ``to_dict`` leaves them out, so the request
    another node rebuilds has none of them (Request itself has ``__slots__``:
    only a subclass's own attributes are in a ``__dict__``)."""
    own = getattr(request, "__dict__", None)
    if not own:
        return []
    return sorted(k for k in own if not k.startswith("_") and k not in type(request).attributes)


def _origin(url: str) -> str:
    """``scheme://netloc`` of *url*, as its text begins."""
    return "/".join(url.split("/", 3)[:3])


def _relative_referer(out: dict[str, Any]) -> None:
    """A Referer on the request's own origin (most links: RefererMiddleware
    sets the page's URL) is kept as ``"ref": "/path"``, about 40 bytes less
    per queued request; ``_absolute_referer`` gives it back as it was."""
    headers = out.get("headers")
    if not headers or not isinstance(out.get("url"), str) or "ref" in out:
        return  # "ref" in out: a Request subclass's own attribute
    referer = headers.get("Referer")
    if not referer or len(referer) != 1:
        return
    origin = _origin(out["url"])
    if referer[0].startswith(origin + "/"):
        out["ref"] = referer[0][len(origin) :]
        del headers["Referer"]
        if not headers:
            del out["headers"]


def _latin1(value: Any) -> Any:
    """The bytes of a stored header name or value (``_text``: latin-1);
    text that latin-1 cannot hold (written by hand) is UTF-8, as Scrapy
    encodes a str header."""
    if not isinstance(value, str):
        return value  # Request refuses what is not text
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _header_bytes(headers: dict[str, Any]) -> dict[Any, Any]:
    """Stored headers as the bytes they were: as str, Request would encode
    them again with the request's encoding (UTF-8 unless set), so a header
    'café' or b'\xe9' would go out changed, and one a cp1251 request cannot
    encode would not be made at all."""
    out: dict[Any, Any] = {}
    for name, values in headers.items():
        if isinstance(values, list):
            values = [_latin1(v) for v in values]
        else:
            values = _latin1(values)
        out[_latin1(name)] = values
    return out


def stored_referer(d: dict[str, Any]) -> str | None:
    """The Referer of a stored request (a dict of its JSON), if it has one."""
    if isinstance(d.get("ref"), str) and isinstance(d.get("url"), str):
        return _origin(d["url"]) + d["ref"]
    headers = d.get("headers")
    if isinstance(headers, dict):
        for name, values in headers.items():
            if name.lower() == "referer" and isinstance(values, list) and values:
                return str(values[0])
    return None


def _absolute_referer(d: dict[str, Any]) -> None:
    ref = d.pop("ref")
    if not isinstance(ref, str) or not ref.startswith("/"):
        raise BadEntry("'ref' is not a path")
    headers = d.setdefault("headers", {})
    if not isinstance(headers, dict):
        raise BadEntry("'headers' is not an object")
    headers["Referer"] = [_origin(d["url"]) + ref]


def _dumps(out: dict[str, Any], lenient: bool) -> str:
    default = repr if lenient else None
    try:
        text = json.dumps(
            out, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=default
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON-storable: {exc}") from None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate: \u escapes keep it and make valid UTF-8.
            text = json.dumps(out, separators=(",", ":"), allow_nan=False, default=default)
    return text


def decode_request(data: str | bytes, spider: Spider, allowed_classes: frozenset[str]) -> Request:
    """The request in *data*; raises BadEntry with the reason if it is not one."""
    return decode_entry(data, spider, allowed_classes)[0]


def decode_entry(
    data: str | bytes, spider: Spider, allowed_classes: frozenset[str]
) -> tuple[Request, bytes | None]:
    """The request in *data* and the origin its items' ids derive from, if
    stored with it: a start request's seen-set key (a link to the same URL
    is another request) or a hash of a ``dont_filter`` request's entry (so is
    each of those; ``encode_request``), kept in its entry so that a
    redelivery after a crash gives its items the same ids. Raises BadEntry
    with the reason."""
    try:
        return _decode(data, spider, allowed_classes)
    except BadEntry:
        raise
    except Exception as exc:  # whatever else garbage makes the decoding raise
        raise BadEntry(f"invalid request: {type(exc).__name__}: {exc}") from None


def _decode(
    data: str | bytes, spider: Spider, allowed_classes: frozenset[str]
) -> tuple[Request, bytes | None]:
    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEntry(f"not JSON: {exc}") from None
    if not isinstance(d, dict) or not isinstance(d.get("url"), str):
        raise BadEntry("not a JSON object with a string 'url'")
    origin = d.pop(_ORIGIN, None)
    if not isinstance(origin, str):
        origin = None
    request_cls = request_class(d.pop("_class", None), allowed_classes, spider)
    if "ref" in d and "ref" not in request_cls.attributes:
        _absolute_referer(d)
    if "body_b64" in d:
        d["body"] = base64.b64decode(d.pop("body_b64"))
    elif isinstance(d.get("body"), str):
        # Its bytes as sent (stored as UTF-8 text): a str would be encoded
        # again with the request's encoding, changing a latin-1 request's.
        d["body"] = d["body"].encode("utf-8", "surrogatepass")
    if isinstance(d.get("headers"), dict):
        d["headers"] = _header_bytes(d["headers"])
    if _has_tags(data):
        decoder = Decoder(allow_list(spider))
        for key in ("meta", "cb_kwargs"):
            if key in d:
                d[key] = decoder.decode(d[key])
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if key not in request_cls.attributes:
            raise BadEntry(f"unknown field {key!r}")
        kwargs[key] = value
    try:
        origin_bytes = START_ORIGIN if origin == "s" else bytes.fromhex(origin) if origin else None
    except ValueError:
        raise BadEntry(f"invalid {_ORIGIN!r} {origin!r}: not hex") from None
    return build_request(request_cls, kwargs, spider), origin_bytes


def build_request(request_cls: type[Request], kwargs: dict[str, Any], spider: Spider) -> Request:
    """``request_cls(**kwargs)``, callbacks named in *kwargs* resolved on
    *spider* (``spider_method``); raises BadEntry with the reason."""
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


_request_classes: weakref.WeakKeyDictionary[Spider, frozenset[str]] = weakref.WeakKeyDictionary()


def _readable_class(name: str, spider: Spider) -> bool:
    """Whether a node of *spider*'s crawl reads back a request of class *name*
    (``request_class_allowed`` with the spider's CRAWLER_REQUEST_CLASSES)."""
    classes = _request_classes.get(spider)
    if classes is None:
        settings = getattr(spider, "settings", None)
        default = default_settings.CRAWLER_REQUEST_CLASSES
        found = settings.getlist("CRAWLER_REQUEST_CLASSES", default) if settings else default
        classes = _request_classes[spider] = frozenset(n.strip() for n in found)
    return request_class_allowed(name, classes, spider)


def request_class_allowed(name: str, allowed_classes: frozenset[str], spider: Spider) -> bool:
    """Whether a node reads back a request of class *name* (``module.Class``,
    as ``Request.to_dict`` names it): one in CRAWLER_REQUEST_CLASSES, or of
    the project's own packages (the meta class allow-list: the package of
    each SPIDER_MODULES module and CRAWLER_META_CLASSES), as the classes in
    ``meta`` are: a Request subclass of the project's own (its extra
    ``attributes`` included, as Scrapy's docs describe them) was
    dead-lettered on every node as a malformed entry."""
    if name in allowed_classes:
        return True
    module, _, qualname = name.rpartition(".")
    return bool(module) and allow_list(spider).allows(module, qualname)


def request_class(name: Any, allowed_classes: frozenset[str], spider: Spider) -> type[Request]:
    """The request class *name* (``Request.to_dict``'s ``_class``; None:
    Request) as a node reads it back. Raises BadEntry with the reason."""
    if name is None:
        return Request
    if not isinstance(name, str):
        raise BadEntry("'_class' is not a string")
    if not request_class_allowed(name, allowed_classes, spider):
        raise BadEntry(f"request class {name!r} is not in CRAWLER_REQUEST_CLASSES")
    try:
        cls = load_object(name)
    except (ImportError, NameError, ValueError) as exc:
        raise BadEntry(f"cannot load request class {name!r}: {exc}") from None
    if not isinstance(cls, type) or not issubclass(cls, Request):
        raise BadEntry(f"{name!r} is not a Request class")
    if name not in allowed_classes and f"{cls.__module__}.{cls.__qualname__}" != name:
        # Allowed as the project's: a class it defines, not one it imports.
        raise BadEntry(f"request class {name!r} is not in CRAWLER_REQUEST_CLASSES")
    return cls


def _has_tags(data: str | bytes) -> bool:
    # No "$t" anywhere: no tagged value, nothing to walk (nearly every request).
    return '"$t"' in data if isinstance(data, str) else b'"$t"' in data


_functions: dict[tuple[type, str], types.FunctionType] = {}


def _class_function(cls: type, name: str) -> types.FunctionType | None:
    """The plain function *name* is in *cls*'s MRO, or None (a staticmethod,
    classmethod, property, other callable or nothing)."""
    found = _functions.get((cls, name))
    if found is None:
        raw = next((vars(k)[name] for k in cls.__mro__ if name in vars(k)), None)
        if type(raw) is not types.FunctionType:
            return None
        found = _functions[(cls, name)] = raw
    return found


def spider_method(spider: Spider, name: Any) -> Any:
    """The method *name* of *spider*'s class or its bases, bound to *spider*
    (private and name-mangled ones included), or None: never a special
    ``__name__``, a staticmethod, classmethod or builtin, nor an attribute
    holding some other callable."""
    if not isinstance(name, str) or not name or (name.startswith("__") and name.endswith("__")):
        return None
    func = _class_function(type(spider), name)
    if func is None or name in getattr(spider, "__dict__", ()):
        return None
    method = getattr(spider, name, None)
    if inspect.ismethod(method) and method.__self__ is spider and method.__func__ is func:
        return method
    return None


def encode_item(item: Any) -> str:
    """JSON of *item* as Scrapy's exporters see it (dates and Decimals as
    strings); a lone surrogate is kept as a ``\\u`` escape."""
    fields = exported_fields(item)
    text = _encoder.encode(fields)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _ascii_encoder.encode(fields)
    return text


def exported_fields(item: Any) -> dict[str, Any]:
    """*item*'s fields as Scrapy's feed exporters write them: declared
    fields first, in declaration order, then the others in item order
    (``BaseItemExporter._get_populated_field_names``), each through its
    field's ``serializer`` if it declares one (``serialize_field``). Items
    are stored this way, as plain JSON, so a field's serializer is applied
    on the node that scraped the item, where its class is."""
    adapter = ItemAdapter(item)
    fields = adapter.asdict()
    if type(item) is dict:  # no declared fields, no field metadata
        return fields
    order = [name for name in adapter.field_names() if name in fields]
    if len(order) < len(fields) or order != list(fields):
        order += [name for name in fields if name not in order]
        fields = {name: fields[name] for name in order}
    for name in fields:
        serializer = adapter.get_field_meta(name).get("serializer")
        if serializer is not None:
            fields[name] = serializer(adapter[name])
    return fields
