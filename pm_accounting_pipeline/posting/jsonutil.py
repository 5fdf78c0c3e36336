"""Exact JSON for money: Decimals are written as JSON number literals and read back as Decimals.

`json` would turn a Decimal into a float (or refuse it); vendors expect numbers, and money must never
pass through a float, so Decimals are emitted verbatim and parsed with `parse_float=Decimal`.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any

_MARK = "\x00dec:"
_MARK_RE = re.compile(r'"\\u0000dec:(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"')


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot encode non-finite Decimal {value!r} as JSON")
        return _MARK + format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _marked(obj: Any) -> Any:
    # json's `default` hook is only called for unknown types; Decimals inside containers are
    # replaced first so they become marked strings that the regex below turns into literals.
    if isinstance(obj, Decimal):
        return _default(obj)
    if isinstance(obj, dict):
        return {k: _marked(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_marked(v) for v in obj]
    return obj


def dumps(obj: Any, *, canonical: bool = True) -> str:
    """Compact JSON; `canonical` sorts keys so equal content gives equal text (and hash)."""
    text = json.dumps(
        _marked(obj), default=_default, sort_keys=canonical, separators=(",", ":"), ensure_ascii=True
    )
    return _MARK_RE.sub(r"\1", text)


def loads(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Decimal)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def payload_hash(obj: Any) -> str:
    return sha256_hex(dumps(obj))
