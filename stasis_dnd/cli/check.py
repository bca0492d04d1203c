"""`stasis-dnd check`: are this Asterisk and this CRM ready for the app?

Connects to ARI with the configured credentials (over https, verifying the
certificate as `run` does) and asks Asterisk whether every sound the IVR is
configured to play exists, and in which languages (with the read-back on,
also the digits/0..digits/9 it says the number with). Then logs in at the CRM's
endpoint without naming a class, so nothing is filed: that shows the CRM is
reachable, answers as BGCRM/BGERP and takes the credentials, but not whether
the configured class exists and files callbacks (only a real request shows it).
With `[outbox] url` set, it also opens the shared outbox database (creating
or migrating its schema, as `run` would).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stasis_dnd.ari.rest import AriError, AriRest
from stasis_dnd.callbacks.crm import CrmClient, CrmOutcome
from stasis_dnd.callbacks.store import describe, open_outbox
from stasis_dnd.settings import DEFAULT_PROFILE, IvrSettings, OutboxSettings, Settings

# Languages the shipped prompts come in; a prompt missing in one is a warning.
EXPECTED_LANGUAGES = ("en", "ru")

# The [ivr] settings that name a sound, by when the flow plays them.
ALWAYS_PLAYED = (
    "prompt",
    "invalid_prompt",
    "sorry",
    "goodbye",
    "confirmation",
    "already_requested",
)
READBACK_SOUNDS = ("readback_prompt", "readback_menu")
# Also played after the read-back when the caller presses change_digit.
ENTRY_SOUNDS = ("entry_prompt", "entry_invalid")
HIDDEN_NUMBER_SOUNDS = ("no_number_prompt",)
# Outside business hours: announced, or confirmed for the next working day.
CLOSED_SOUNDS = ("closed_prompt",)
NEXT_DAY_SOUNDS = ("next_day_confirmation",)
# The read-back says the number with these, one sound per digit.
DIGIT_SOUNDS = tuple(f"digits/{digit}" for digit in range(10))
INSTALL_PROMPTS = "install the prompts with: stasis-dnd install-sounds <Asterisk sounds folder>"
INSTALL_DIGITS = (
    "install Asterisk's core sounds in every language callers use "
    "(Debian: apt-get install asterisk-core-sounds-en asterisk-core-sounds-ru), "
    "or set [ivr] readback = no"
)


@dataclass(frozen=True)
class Finding:
    ok: bool
    text: str
    # What to do about it when not ok, one sentence ("" = nothing to say).
    fix: str = ""


def sound_settings(ivr: IvrSettings) -> list[str]:
    """Names of the [ivr] settings whose sounds the flow may play, as switched."""
    names = list(ALWAYS_PLAYED)
    if ivr.readback:
        names += READBACK_SOUNDS
    if ivr.readback or ivr.hidden_number_entry:
        names += ENTRY_SOUNDS
    if ivr.hidden_number_entry:
        names += HIDDEN_NUMBER_SOUNDS
    if ivr.outside_hours == "announce":
        names += CLOSED_SOUNDS
    # Offered outside hours: only a schedule or closed dates make a call come outside them.
    if ivr.outside_hours == "offer" and (ivr.hours or ivr.closed_dates):
        names += NEXT_DAY_SOUNDS
    return names


def configured_sounds(settings: Settings) -> list[str]:
    """Sound ids the IVR may play in any profile, each once (empty settings
    and media URIs other than sound: are skipped)."""
    return list(sounds_by_profile(settings))


def sounds_by_profile(settings: Settings) -> dict[str, list[str]]:
    """Each sound id the IVR may play -> the profiles that play it."""
    sounds: dict[str, list[str]] = {}
    for profile in settings.all_profiles():
        for setting in sound_settings(profile.ivr):
            name = getattr(profile.ivr, setting)
            scheme, _, rest = name.rpartition(":")
            users = sounds.setdefault(rest, []) if name and scheme in ("", "sound") else []
            if name and scheme in ("", "sound") and profile.name not in users:
                users.append(profile.name)
    return sounds


def _languages(sound: dict[str, Any]) -> list[str]:
    formats = sound.get("formats", [])
    return sorted({f.get("language", "?") for f in formats if isinstance(f, dict)})


def _digits_finding(rest: AriRest) -> Finding:
    """Whether Asterisk can say a number digit by digit in the expected languages."""
    where = f"sounds {DIGIT_SOUNDS[0]}..{DIGIT_SOUNDS[-1]} (the read-back says the number)"
    absent: list[str] = []
    lacking: set[str] = set()  # expected languages some digit is missing in
    for sound_id in DIGIT_SOUNDS:
        sound = rest.sound(sound_id)
        if sound is None:
            absent.append(sound_id)
        else:
            lacking |= set(EXPECTED_LANGUAGES) - set(_languages(sound))
    if absent:
        return Finding(
            False, f"{where}: {', '.join(absent)} missing on this Asterisk", INSTALL_DIGITS
        )
    if not lacking:
        return Finding(True, f"{where}: {', '.join(EXPECTED_LANGUAGES)}")
    languages = [lang for lang in EXPECTED_LANGUAGES if lang in lacking]
    packages = " ".join(f"asterisk-core-sounds-{lang}" for lang in languages)
    return Finding(
        True,
        f"{where}: not in {', '.join(languages)} (callers with that language hear the "
        f"number in another language or not at all; Debian: apt-get install {packages})",
    )


def check_asterisk(settings: Settings) -> list[Finding]:
    """What a connection to the configured Asterisk shows; raises `AriError`
    (with a one-sentence message) when ARI cannot be used at all."""
    findings = []
    with AriRest(settings.ari) as rest:
        info = rest.asterisk_info()
        version = info.get("system", {}).get("version", "unknown")
        text = f"ARI at {settings.ari.url}: Asterisk {version}"
        if rest.base_url.startswith("https:"):
            trusted = settings.ari.ca_bundle or "the system's CAs"
            text += f" (certificate verified against {trusted})"
        findings.append(Finding(True, text))
        for sound_id, users in sounds_by_profile(settings).items():
            # Named when only some profiles play it: which section to look at.
            whose = "" if DEFAULT_PROFILE in users else f" (profile {', '.join(users)})"
            sound = rest.sound(sound_id)
            if sound is None:
                missing_text = f"sound {sound_id}{whose}: missing on this Asterisk"
                findings.append(Finding(False, missing_text, INSTALL_PROMPTS))
                continue
            languages = _languages(sound)
            missing = [lang for lang in EXPECTED_LANGUAGES if lang not in languages]
            text = f"sound {sound_id}{whose}: {', '.join(languages) or 'no formats'}"
            if missing:
                text += f" (no {', '.join(missing)}: callers with that language hear English)"
            findings.append(Finding(True, text))
        if any(profile.ivr.readback for profile in settings.all_profiles()):
            findings.append(_digits_finding(rest))
    return findings


def check_crm(settings: Settings) -> Finding:
    """What logging in at the configured CRM shows (no request is filed)."""
    client = CrmClient(settings.crm)
    try:
        result = client.probe()
    finally:
        client.close()
    where = f"CRM at {client.url}"
    user = settings.crm.username
    if result.outcome in (CrmOutcome.DELIVERED, CrmOutcome.REFUSED):
        return Finding(
            True,
            f"{where}: answers as BGCRM/BGERP and accepts the login of {user!r} (whether "
            f"class {settings.crm.class_name} files callbacks shows with the first request)",
        )
    if result.outcome is CrmOutcome.BAD_CREDENTIALS:
        return Finding(False, f"{where}: refused the login of {user!r} ([crm] username, password)")
    if result.outcome is CrmOutcome.UNAVAILABLE:
        return Finding(False, f"{where}: not reachable ({result.detail})")
    return Finding(
        False,
        f"{where}: does not answer like BGCRM/BGERP ({result.detail}); check [crm] url and style",
    )


__all__ = [
    "AriError",
    "Finding",
    "check_asterisk",
    "check_crm",
    "configured_sounds",
    "sound_settings",
]


def check_outbox_database(outbox: OutboxSettings) -> str:
    """Open and close the outbox database; what was found, or OutboxError."""
    store = open_outbox(outbox)
    try:
        counts = store.counts()
    finally:
        store.close()
    return f"outbox database {describe(outbox)}: {counts['pending']} pending, {counts['dead']} dead"
