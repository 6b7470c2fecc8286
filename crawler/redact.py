"""Keeps passwords in Redis URLs out of every log line.

Scrapy logs the overridden settings at start-up, which would print a
``REDIS_URL`` given in settings or with ``-s``; this filter rewrites any
``scheme://user:password@host`` in a record to ``scheme://user:***@host``.
"""

from __future__ import annotations

import logging
import re

# user:password@ up to the last "@" before the host (a password may hold "@"
# or quotes); and password=... (or sentinel_password=...) in a query string.
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^/\s]*@", re.IGNORECASE)
# In a Redis URL the password may hold "/" too (unescaped, the URL does not
# parse, and the error quotes it): up to the last "@" before any whitespace.
# In other URLs "host:port/path@x" is no password.
_REDIS_URL_PASSWORD = re.compile(r"(\brediss?(?:\+sentinel)?://[^:/@\s]*:)[^\s]*@", re.I)
# password=, sentinel_password=, ssl_password= (the key file's passphrase).
_QUERY_PASSWORD = re.compile(r"([?&][a-z_]*password=)[^&\s'\"]*", re.IGNORECASE)


def redact_text(text: str) -> str:
    text = _URL_PASSWORD.sub(r"\1***@", _REDIS_URL_PASSWORD.sub(r"\1***@", text))
    return _QUERY_PASSWORD.sub(r"\1***", text)


class RedactPasswords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install() -> None:
    """Add the filter to the loggers that print settings (once)."""
    for name in ("scrapy.crawler", "scrapy.utils.log", "scrapy.core.engine"):
        target = logging.getLogger(name)
        if not any(isinstance(f, RedactPasswords) for f in target.filters):
            target.addFilter(RedactPasswords())
