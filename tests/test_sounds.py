"""The project's prompts in sounds/: every prompt of sounds/prompts.toml, every
language, every format.

Asterisk plays a .wav only as 8 kHz 16-bit mono PCM; the headerless formats
carry no header to check, so their lengths are compared with the .wav's.
Regenerate the files with ``sounds/generate`` (espeak-ng + sox); this test
needs neither.

``PROMPTS``, ``LANGUAGES`` and ``prompt_files()`` are meant to be imported by
other tests (e.g. one that checks that every prompt the app's configuration
names is shipped).
"""

from __future__ import annotations

import tomllib
import wave
from dataclasses import fields
from pathlib import Path

import pytest

from stasis_dnd.settings import IvrSettings

SOUNDS_DIR = Path(__file__).resolve().parent.parent / "sounds"
# Every prompt's text in every language: the one list of the shipped prompts.
TEXTS: dict[str, dict[str, str]] = tomllib.loads(
    (SOUNDS_DIR / "prompts.toml").read_text(encoding="utf-8")
)

# Prompt names as Asterisk sees them (relative to the language directory).
PROMPTS: tuple[str, ...] = tuple(f"custom/{name}" for name in TEXTS)
LANGUAGES: tuple[str, ...] = ("en", "ru")

# Bytes per second of each headerless format.
RAW_FORMATS: dict[str, int] = {
    "sln16": 16000 * 2,  # 16 kHz signed linear, little-endian
    "ulaw": 8000,
    "alaw": 8000,
}
FORMATS: tuple[str, ...] = ("wav", *RAW_FORMATS)

# Shorter than this is surely broken, longer is surely not a short prompt.
MIN_SECONDS = 0.5
MAX_SECONDS = 30.0
# Resampling may round the length by a few samples.
LENGTH_TOLERANCE_SECONDS = 0.01


def prompt_files(prompt: str, language: str) -> dict[str, Path]:
    """Paths of every format of ``prompt`` (e.g. "custom/X") in ``language``."""
    return {ext: SOUNDS_DIR / language / f"{prompt}.{ext}" for ext in FORMATS}


def shipped_prompts(language: str) -> set[str]:
    """Prompt names with a .wav under sounds/<language>/."""
    root = SOUNDS_DIR / language
    return {str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.wav")}


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


CASES = [(p, lang) for p in PROMPTS for lang in LANGUAGES]


@pytest.mark.parametrize(("prompt", "language"), CASES)
def test_every_format_exists(prompt: str, language: str) -> None:
    missing = [str(p) for p in prompt_files(prompt, language).values() if not p.is_file()]
    assert not missing, f"missing: {missing} (run sounds/generate)"


@pytest.mark.parametrize(("prompt", "language"), CASES)
def test_wav_is_8khz_16bit_mono(prompt: str, language: str) -> None:
    path = prompt_files(prompt, language)["wav"]
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 1
        assert w.getsampwidth() == 2
        assert w.getframerate() == 8000
        assert w.getcomptype() == "NONE"
    assert MIN_SECONDS <= wav_seconds(path) <= MAX_SECONDS


@pytest.mark.parametrize(("prompt", "language"), CASES)
@pytest.mark.parametrize("ext", sorted(RAW_FORMATS))
def test_raw_format_matches_wav_length(prompt: str, language: str, ext: str) -> None:
    files = prompt_files(prompt, language)
    size = files[ext].stat().st_size
    assert size > 0
    if ext == "sln16":
        assert size % 2 == 0, "sln16 is 16-bit samples: odd length"
    seconds = size / RAW_FORMATS[ext]
    assert seconds == pytest.approx(wav_seconds(files["wav"]), abs=LENGTH_TOLERANCE_SECONDS)


def test_every_prompt_has_a_text_in_every_language_and_no_other() -> None:
    for name, texts in TEXTS.items():
        assert sorted(texts) == sorted(LANGUAGES), name
        assert all(isinstance(t, str) and t.strip() for t in texts.values()), name


def test_every_default_custom_sound_of_the_settings_is_shipped() -> None:
    defaults = [f.default for f in fields(IvrSettings) if isinstance(f.default, str)]
    # And every shipped prompt is played by default: none is dead weight.
    assert {d for d in defaults if d.startswith("custom/")} == set(PROMPTS)


def test_no_text_files_beside_the_audio() -> None:
    # The texts live in prompts.toml only; a stray .txt would be a second copy.
    assert not list(SOUNDS_DIR.glob("*/custom/*.txt"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_unlisted_prompts(language: str) -> None:
    # A prompt added to sounds/ but not to PROMPTS would escape the checks above.
    assert shipped_prompts(language) == set(PROMPTS)
