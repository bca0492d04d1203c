"""What the logs may show: masked numbers, URLs without credentials."""

from __future__ import annotations

from stasis_dnd.logs import mask_phone, strip_userinfo


def test_strip_userinfo() -> None:
    assert strip_userinfo("http://u:p@host:8088/x") == "http://host:8088/x"
    assert strip_userinfo("https://host/x") == "https://host/x"


def test_mask_phone_keeps_the_first_three_and_last_two_characters() -> None:
    assert mask_phone("+79001234567") == "+79*******67"
    assert mask_phone("1234") == "****"  # too short to show any of it
