"""The framework's exceptions. Each says when it is raised."""

from __future__ import annotations


class CrawlerError(Exception):
    """Base class: raised for any error of this framework."""


class ConfigError(CrawlerError):
    """Raised when a setting has a value the framework cannot use."""


class RedisUnavailable(CrawlerError):
    """Raised when Redis cannot be reached at start-up."""


class LocalRedisError(CrawlerError):
    """Raised when the private local redis-server cannot be started."""


class BadSeed(CrawlerError):
    """Raised when a seed line cannot become a request; the message is the reason."""


class BadEntry(CrawlerError):
    """Raised when an entry read from Redis cannot be decoded into a request."""
