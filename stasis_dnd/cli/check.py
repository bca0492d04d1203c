"""`stasis-dnd check`: are this Asterisk and this CRM ready for the app?

Connects to ARI with the configured credentials (over https, verifying the
certificate as `run` does) and asks Asterisk whether every sound the IVR is
configured to play exists, and in which languages. Then logs in at the CRM's
endpoint without naming a class, so nothing is filed: that shows the CRM is
reachable, answers as BGCRM/BGERP and takes the credentials, but not whether
the configured class exists and files callbacks (only a real request shows it).
"""

from __future__ import annotations

from dataclasses import dataclass

from stasis_dnd.ari.rest import AriError, AriRest
from stasis_dnd.callbacks.crm import CrmClient, CrmOutcome
from stasis_dnd.settings import Settings

# Languages the shipped prompts come in; a prompt missing in one is a warning.
EXPECTED_LANGUAGES = ("en", "ru")


@dataclass(frozen=True)
class Finding:
    ok: bool
    text: str


def configured_sounds(settings: Settings) -> list[str]:
    """Sound ids the IVR may play (media URIs other than sound: are skipped)."""
    ivr = settings.ivr
    names = [ivr.prompt, ivr.invalid_prompt, ivr.sorry, ivr.goodbye, ivr.confirmation]
    sounds: list[str] = []
    for name in names:
        scheme, _, rest = name.rpartition(":")
        if name and scheme in ("", "sound") and rest not in sounds:
            sounds.append(rest)
    return sounds


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
        for sound_id in configured_sounds(settings):
            sound = rest.sound(sound_id)
            if sound is None:
                findings.append(Finding(False, f"sound {sound_id}: missing on this Asterisk"))
                continue
            languages = sorted(
                {f.get("language", "?") for f in sound.get("formats", []) if isinstance(f, dict)}
            )
            missing = [lang for lang in EXPECTED_LANGUAGES if lang not in languages]
            text = f"sound {sound_id}: {', '.join(languages) or 'no formats'}"
            if missing:
                text += f" (no {', '.join(missing)}: callers with that language hear English)"
            findings.append(Finding(True, text))
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


__all__ = ["AriError", "Finding", "check_asterisk", "check_crm", "configured_sounds"]
