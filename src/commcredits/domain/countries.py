"""ISO 3166-1 alpha-2 countries, from CLDR through Babel."""

from __future__ import annotations

from functools import cache
from typing import Final

from commcredits.domain.errors import RuleViolation

# CLDR territories with two-letter codes that are not countries.
_NOT_COUNTRIES: Final = frozenset({"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"})


@cache
def _names() -> dict[str, str]:
    from babel import Locale

    territories = Locale("en").territories
    return {
        code: name
        for code, name in territories.items()
        if len(code) == 2 and code.isalpha() and code not in _NOT_COUNTRIES
    }


def is_country(code: object) -> bool:
    return isinstance(code, str) and code in _names()


def country_name(code: str) -> str:
    """English name of a country ("DE" -> "Germany"); the code itself when unknown."""
    return _names().get(code, code)


def check_country(code: object, *, field: str = "country") -> str:
    """Return ``code`` if it is an ISO 3166-1 alpha-2 country, else raise ``invalid_country``."""
    if not is_country(code):
        raise RuleViolation(
            f'{code!r} is not an ISO 3166-1 alpha-2 country code (such as "US")',
            code="invalid_country",
            field=field,
        )
    assert isinstance(code, str)
    return code
