from __future__ import annotations

from cronstream.runtime.untrusted import safe_bytes, safe_text


def test_nul_and_lone_surrogates_are_escaped() -> None:
    text = safe_text("key a\x00b and \ud800 end")
    assert text == "key a\\u0000b and \\ud800 end"
    text.encode("utf-8")  # storable


def test_long_text_is_cut_with_a_mark() -> None:
    assert safe_text("x" * 50, limit=10) == "xxxxxxx..."
    assert safe_text("short", limit=10) == "short"


def test_bytes_are_capped_without_splitting_a_character() -> None:
    capped = safe_bytes("é" * 10, limit=6)  # 3 characters of 2 bytes would fit
    assert len(capped) <= 6
    assert capped.decode("utf-8").startswith("éé")
