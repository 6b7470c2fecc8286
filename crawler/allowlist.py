"""Which classes stored values may name: the meta class allow-list.

Classes (Items, dataclasses, attrs classes, enums) in ``meta`` and
``cb_kwargs`` are stored by name (see ``crawler.values``) and imported on
another node only when the allow-list holds them: the package of each
``SPIDER_MODULES`` module (``myproj`` for ``myproj.spiders``), the running
spider's own module, and ``CRAWLER_META_CLASSES`` (dotted class names or
module prefixes). The check comes before any import.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import weakref
from collections.abc import Callable
from typing import Any

import attrs
from scrapy import Item

from crawler.exceptions import BadEntry, ConfigError


@dataclasses.dataclass(frozen=True)
class AllowList:
    """Where classes named in stored values may be imported from."""

    prefixes: frozenset[str]

    def allows(self, module: str, qualname: str) -> bool:
        if f"{module}.{qualname}" in self.prefixes:
            return True
        parts = module.split(".")
        return any(".".join(parts[:n]) in self.prefixes for n in range(1, len(parts) + 1))


def allow_list_entries(settings: Any) -> frozenset[str]:
    """The allow-list of these settings: CRAWLER_META_CLASSES plus the
    package of each SPIDER_MODULES module. Raises ConfigError for a bad entry."""
    extra = settings.getlist("CRAWLER_META_CLASSES") if settings is not None else []
    for entry in extra:
        if not isinstance(entry, str) or not entry.strip(". *"):
            raise ConfigError(
                f"CRAWLER_META_CLASSES entry {entry!r} is not a dotted class or module "
                "name; use e.g. 'myproj.items' or 'otherlib.items.Product'."
            )
    modules = settings.getlist("SPIDER_MODULES") if settings is not None else []
    packages = {m.rpartition(".")[0] or m for m in modules}
    return frozenset({e.strip().removesuffix(".*") for e in extra} | packages)


_allow_lists: weakref.WeakKeyDictionary[Any, AllowList] = weakref.WeakKeyDictionary()


def allow_list(spider: Any) -> AllowList:
    """The allow-list of *spider*'s crawl (its settings) plus its own module."""
    found = _allow_lists.get(spider)
    if found is None:
        entries = allow_list_entries(getattr(spider, "settings", None))
        found = AllowList(entries | {type(spider).__module__})
        _allow_lists[spider] = found
    return found


def load_class(allowed: AllowList, name: Any, kind: str) -> Any:
    """The class stored as "<module>:<qualname>", imported only if allowed."""
    if not isinstance(name, str) or ":" not in name:
        raise BadEntry(f"{kind} tag names no class")
    module, _, qualname = name.partition(":")
    if not allowed.allows(module, qualname):
        raise BadEntry(
            f"class {module}.{qualname} is not in the meta class allow-list (the "
            "packages of SPIDER_MODULES and CRAWLER_META_CLASSES); it was not loaded"
        )
    found = _loaded.get((name, kind))
    if found is None:
        found = _import(module, qualname, kind)
        _loaded[(name, kind)] = found
    return found


_loaded: dict[tuple[str, str], type] = {}
_KINDS: dict[str, Callable[[Any], bool]] = {
    "item": lambda c: issubclass(c, Item),
    "dataclass": dataclasses.is_dataclass,
    "attrs": attrs.has,
    "enum": lambda c: issubclass(c, enum.Enum),
}


def _import(module: str, qualname: str, kind: str) -> type:
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise BadEntry(f"cannot load class {module}.{qualname}: {exc}") from None
    if (
        not isinstance(obj, type)
        or obj.__module__ != module
        or obj.__qualname__ != qualname
        or not _KINDS[kind](obj)
    ):
        raise BadEntry(f"{module}.{qualname} is not a class of kind {kind!r}")
    return obj
