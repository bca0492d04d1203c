"""Caller-id normalisation: only `+` and digits ever reach the CRM."""

from __future__ import annotations

import pytest

from stasis_dnd.core import normalize_number
from stasis_dnd.core.callerid import phone_of


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+7 900 123-45-67", "+79001234567"),
        ("8 (900) 123.45.67", "89001234567"),
        ("  79001234567 ", "79001234567"),
        ("+1-555-0100", "+15550100"),
        ("100", "100"),
        ("12", ""),  # too short to call back
        ("1" * 21, ""),  # too long for any phone number
        ("", ""),
        ("+", ""),
        ("anonymous", ""),
        ("Unknown", ""),
        ("restricted", ""),
        ("7900&j_password=x", ""),
        ("7900%26", ""),
        ("7900#", ""),
        ("7900\n123", ""),
        ("7900\t123", ""),
        ("++79001234567", ""),
        ("7900+1234567", ""),
        ("\u0667\u0668\u0669\u0660", ""),  # Arabic-Indic digits are not ASCII digits
        ('"79001234567"', ""),
    ],
)
def test_normalize_number(raw: str, expected: str) -> None:
    assert normalize_number(raw) == expected


def test_limits_are_adjustable() -> None:
    assert normalize_number("12", min_digits=2) == "12"
    assert normalize_number("12345", max_digits=4) == ""


@pytest.mark.parametrize(
    ("number", "name", "source", "expected"),
    [
        ("+79001234567", "89001112233", "number", "+79001234567"),
        ("anonymous", "89001112233", "number", ""),
        ("+79001234567", "89001112233", "name", "89001112233"),
        ("", "89001112233", "number_then_name", "89001112233"),
        ("+79001234567", "x", "number_then_name", "+79001234567"),
        ("", "Ivan", "number_then_name", ""),
    ],
)
def test_phone_of(number: str, name: str, source: str, expected: str) -> None:
    assert phone_of(number, name, source) == expected
