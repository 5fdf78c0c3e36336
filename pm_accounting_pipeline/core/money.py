"""Money as a value: an exact Decimal amount in one ISO 4217 currency.

Modelled on beancount's `Amount`: immutable, arithmetic only between equal currencies, and the
currency's minor unit (JPY 0, EUR 2, KWD 3) comes from CLDR via babel rather than a hand-kept table.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from babel.numbers import get_currency_precision, list_currencies


class CurrencyError(ValueError):
    """An unknown currency code or arithmetic across currencies."""


@cache
def known_currencies() -> frozenset[str]:
    return frozenset(c for c in list_currencies() if len(c) == 3 and c.isupper())


def is_currency(code: str | None) -> bool:
    return code is not None and code in known_currencies()


@cache
def minor_digits(currency: str) -> int:
    """Decimal places of the currency's minor unit, e.g. 2 for EUR, 0 for JPY, 3 for KWD."""
    if not is_currency(currency):
        raise CurrencyError(f"unknown ISO 4217 currency code {currency!r}")
    return int(get_currency_precision(currency))


def minor_digits_table(currencies: set[str] | list[str]) -> dict[str, int]:
    return {c: minor_digits(c) for c in currencies}


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError(f"Money amount must be Decimal, got {type(self.amount).__name__}")
        if not is_currency(self.currency):
            raise CurrencyError(f"unknown ISO 4217 currency code {self.currency!r}")

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        return cls(Decimal(minor).scaleb(-minor_digits(currency)), currency)

    def to_minor(self) -> int:
        """The amount in minor units; the amount must already be on the minor-unit grid."""
        scaled = self.amount.scaleb(minor_digits(self.currency))
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{self} is not rounded to the minor unit of {self.currency}")
        return int(scaled)

    def _check(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __str__(self) -> str:
        return f"{self.amount:.{minor_digits(self.currency)}f} {self.currency}"
