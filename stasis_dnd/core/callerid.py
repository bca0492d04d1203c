"""Turn a caller id into a phone number the CRM can call back, or nothing.

The original AGI pasted the raw caller-id name into the CRM URL; whatever
comes out of here is only ever `+` and ASCII digits.
"""

from __future__ import annotations

import re

# Separators people and PBXes put into numbers; they carry no meaning.
_SEPARATORS = frozenset(" -.()")
_DIGITS = frozenset("0123456789")
_CLEAN = re.compile(r"\+?[0-9]+")

# Shorter than this is an internal extension or junk; E.164 allows 15 digits
# and a dialled international prefix adds a few more.
MIN_DIGITS = 3
MAX_DIGITS = 20


def normalize_number(
    raw: str, *, min_digits: int = MIN_DIGITS, max_digits: int = MAX_DIGITS
) -> str:
    """Return `raw` as `+?[0-9]+`, or "" when it is not a usable phone number.

    Keeps digits and one leading `+`, drops spaces, dashes, dots and brackets;
    anything else (letters, `&`, `%`, `#`, control characters, non-ASCII
    digits) makes the number unusable, as does a digit count outside
    `min_digits..max_digits`.
    """
    text = raw.strip()
    plus = text.startswith("+")
    if plus:
        text = text[1:]
    digits: list[str] = []
    for char in text:
        if char in _DIGITS:
            digits.append(char)
        elif char not in _SEPARATORS:
            return ""
    if not min_digits <= len(digits) <= max_digits:
        return ""
    return ("+" if plus else "") + "".join(digits)


def phone_of(caller_number: str, caller_name: str, source: str) -> str:
    """Pick the callback number from the caller-id fields named by `source`
    ("number", "name" or "number_then_name"); "" when none is usable."""
    if source == "name":
        return normalize_number(caller_name)
    number = normalize_number(caller_number)
    if number or source == "number":
        return number
    return normalize_number(caller_name)


def callback_number(number: str, pattern: str, rewrites: tuple[tuple[str, str], ...] = ()) -> str:
    """Apply the first rewrite rule whose pattern matches all of `number`,
    then return it if all of it matches `pattern`, else "".

    `number` is already clean (`+` and digits); the result is checked to be
    clean again, so no rule can bring in anything else.
    """
    if not number:
        return ""
    for find, replace in rewrites:
        match = re.fullmatch(find, number)
        if match:
            number = match.expand(replace)
            break
    if not _CLEAN.fullmatch(number) or not re.fullmatch(pattern, number):
        return ""
    return number
