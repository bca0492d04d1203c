"""Typed, validated settings for every part of the app, with the defaults that
reproduce the original dialplan + AGI setup.

These are plain frozen dataclasses with no I/O; `stasis_dnd.config` fills them
from an INI file and the environment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from stasis_dnd.hours import Window

# What a field holds, where the INI file spells it differently from its Python
# type (`stasis_dnd.config` reads each kind its own way).
Duration = float  # seconds, written "90", "90s", "30m", "24h" or "7d"
Url = str  # http:// or https://, without a user or password in it
DatabaseUrl = str  # postgresql://[user[:password]@]host[:port]/database[?options]; "" for none
CaFile = str  # a PEM file of CAs; "" means the system's CAs
Secret = str  # taken as written (not stripped), never shown
HostPort = str  # host:port to listen on; "" for off
Switch = bool  # yes/no, on/off, true/false, 1/0
Pattern = str  # a regular expression the whole value must match
# Number rewrite rules, one per line "PATTERN => REPLACEMENT" (first full match wins).
Rewrites = tuple[tuple[str, str], ...]
# A weekly schedule, "mon-fri 09:00-18:00, sat 10:00-14:00" (stasis_dnd.hours).
Hours = tuple[Window, ...]
ClosedDates = tuple[date, ...]  # "2026-12-31, 2027-01-01"
TimeZone = str  # an IANA name such as Europe/Moscow; "" is the machine's own zone

# Media names without a scheme are Asterisk sounds; "sound:" is prepended.
# Facts about a call the CRM can receive ([crm] context_params), by name.
CONTEXT_FACTS = (
    "queue",
    "reason",
    "waited_seconds",
    "dialled",
    "language",
    "uniqueid",
    "linkedid",
    "requested_at",
    "profile",
)
# The name of the profile made of [ivr] and [crm] themselves.
DEFAULT_PROFILE = "default"
# The [crm] fields a profile may set: what is sent, not where or as whom.
PROFILE_CRM_FIELDS = (
    "class_name",
    "sub",
    "phone_param",
    "params",
    "request_id_param",
    "callerid_param",
    "context_params",
)

DEFAULT_PROMPT = "custom/IVR_DND_OPERATORS"
DEFAULT_SORRY = "sorry-youre-having-problems"
DEFAULT_GOODBYE = "vm-goodbye"
DEFAULT_CONFIRMATION = "custom/IVR_DND_CALLBACK_CONFIRMED"
DEFAULT_ALREADY_REQUESTED = "custom/IVR_DND_ALREADY_REQUESTED"
DEFAULT_READBACK = "custom/IVR_DND_READBACK"
DEFAULT_READBACK_MENU = "custom/IVR_DND_READBACK_MENU"
DEFAULT_ENTRY = "custom/IVR_DND_ENTER_NUMBER"
DEFAULT_ENTRY_INVALID = "custom/IVR_DND_NUMBER_INVALID"
DEFAULT_NO_NUMBER = "custom/IVR_DND_NO_NUMBER"
DEFAULT_CLOSED = "custom/IVR_DND_CLOSED"
DEFAULT_NEXT_DAY = "custom/IVR_DND_CALLBACK_NEXT_DAY"
# 6 to 15 digits (E.164's longest), with an optional leading +.
DEFAULT_NUMBER_PATTERN = r"\+?[0-9]{6,15}"

CALLERID_SOURCES = ("number", "name", "number_then_name")
PROMPT_FAILURE_ACTIONS = ("continue", "sorry", "wait")
OUTSIDE_HOURS_ACTIONS = ("offer", "announce", "continue")
CRM_STYLES = ("dynamic", "run")
CRM_METHODS = ("post", "get")
# When the outbox cannot store a request, the CRM is tried at once for at most
# this long, while the caller waits in silence.
DIRECT_CRM_TIMEOUT = 3.0


def breaks_crm_answer(param: str) -> bool:
    """Whether sending a parameter of this name would spoil the CRM's answer:
    BGERP wraps its answer as JSONP `callback(...)` when one named callback is sent."""
    return param.lower() == "callback"


@dataclass(frozen=True)
class DialplanTarget:
    """Where a call continues in the dialplan: context, extension, priority
    (a number, or a label when `priority` is not all digits)."""

    context: str
    extension: str
    priority: str = "1"

    @classmethod
    def parse(cls, text: str) -> DialplanTarget | None:
        """ "context,extension,priority" (priority defaults to 1); "" means
        the priority after Stasis() (None). Raises ValueError."""
        if not text.strip():
            return None
        parts = [p.strip() for p in text.split(",")]
        if len(parts) == 2:
            parts.append("1")
        if len(parts) != 3 or not all(parts):
            raise ValueError("expected context,extension,priority (e.g. dnd-fallback,s,1)")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.context},{self.extension},{self.priority}"


# Callers without a stored request go to the dialplan's own menu; callers
# whose request is stored hear only goodbye (both contexts are in
# extensions.conf.sample and the FreePBX sample).
DEFAULT_CONTINUE = DialplanTarget("dnd-fallback", "s", "1")
DEFAULT_CONTINUE_STORED = DialplanTarget("dnd-fallback", "hang", "1")


@dataclass(frozen=True)
class IvrSettings:
    """What the caller hears and how long the flow waits for them."""

    prompt: str = DEFAULT_PROMPT
    # The original used TIMEOUT(digit)=3 before WaitExten.
    digit_timeout: float = 3.0
    accept_digit: str = "1"
    # How many times the caller hears the menu; the original gave one chance.
    attempts: int = 1
    # Played before the menu is repeated after a wrong key or silence ("" = none).
    invalid_prompt: str = ""
    sorry: str = DEFAULT_SORRY
    goodbye: str = DEFAULT_GOODBYE
    # Played after the callback request is stored, before goodbye ("" = none).
    confirmation: str = DEFAULT_CONFIRMATION
    # Played instead of the confirmation when the number already has a request
    # within [outbox] dedupe_window (nothing new is sent).
    already_requested: str = DEFAULT_ALREADY_REQUESTED
    # After the key: "we will call you back at" + the number, digit by digit,
    # + "press 1 to confirm, 2 to enter another number".
    readback: Switch = True
    readback_prompt: str = DEFAULT_READBACK
    readback_menu: str = DEFAULT_READBACK_MENU
    confirm_digit: str = "1"
    change_digit: str = "2"
    # Silence after the read-back confirms the number (else it counts as a wrong key).
    silence_confirms: Switch = True
    # How many times the read-back is offered before sorry (wrong keys, silence).
    confirm_attempts: int = 2
    # A caller without a usable number hears no_number_prompt and may key one in.
    hidden_number_entry: Switch = True
    no_number_prompt: str = DEFAULT_NO_NUMBER
    # "Please enter the number, then the hash key"; * starts over.
    entry_prompt: str = DEFAULT_ENTRY
    entry_invalid: str = DEFAULT_ENTRY_INVALID
    # The longest wait for the next digit; the number so far is then taken as entered.
    entry_digit_timeout: Duration = 5.0
    # Entry ends by itself at this many digits.
    entry_max_digits: int = 16
    # How many numbers a caller may key in before sorry (invalid or changed).
    entry_attempts: int = 3
    # Every number the CRM gets (caller id or keyed in) matches this after the rewrites.
    number_pattern: Pattern = DEFAULT_NUMBER_PATTERN
    # E.g. "8(\d{10}) => +7\1": a national Russian number to E.164.
    number_rewrite: Rewrites = ()
    # The original's Wait(1) after Answer, so the caller's audio path is open.
    answer_pause: float = 1.0
    callerid_source: str = "number"
    on_prompt_failure: str = "continue"
    # A playback that has neither finished nor failed after this long is
    # stopped and treated as failed (seen stuck on Asterisk 22 after a
    # freeze); far longer than any prompt, so only a stuck one reaches it.
    playback_timeout: Duration = 120.0
    # Asterisk reports a playback started within milliseconds; a prompt that
    # has not started after this long never will (seen on Asterisk 22 after a
    # freeze), so the caller is not left in silence until playback_timeout.
    playback_start_timeout: Duration = 5.0
    # The longest a caller waits in silence while the request is stored (the
    # outbox write, then the direct CRM try if the disk hangs); past it the
    # caller hears sorry.
    store_timeout: Duration = 10.0
    # Where the call continues when the app hands it back (shutdown, a prompt
    # that failed): None is the priority after Stasis().
    continue_to: DialplanTarget | None = DEFAULT_CONTINUE
    # The same for a caller whose request is already stored: must not offer
    # the menu again (a second "1" would file a second request).
    continue_stored_to: DialplanTarget | None = DEFAULT_CONTINUE_STORED
    # Business hours: when `hours` (empty: all week) and `closed_dates` are
    # open, in `timezone`. Outside them: "offer" the callback as usual, with
    # next_day_confirmation instead of the confirmation; "announce" that the
    # office is closed (closed_prompt, goodbye, no request); or "continue" the
    # call in the dialplan at once, to closed_continue_to. An empty
    # next_day_confirmation plays the usual confirmation.
    hours: Hours = ()
    closed_dates: ClosedDates = ()
    timezone: TimeZone = ""
    outside_hours: str = "offer"
    closed_prompt: str = DEFAULT_CLOSED
    next_day_confirmation: str = DEFAULT_NEXT_DAY
    closed_continue_to: DialplanTarget | None = DEFAULT_CONTINUE

    def __post_init__(self) -> None:
        if len(self.accept_digit) != 1 or self.accept_digit not in "0123456789*#":
            raise ValueError("accept_digit must be one DTMF key: 0-9, * or #")
        if self.digit_timeout <= 0:
            raise ValueError("digit_timeout must be greater than 0")
        for name in ("playback_timeout", "playback_start_timeout", "store_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be greater than 0")
        if self.answer_pause < 0:
            raise ValueError("answer_pause must not be negative")
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.callerid_source not in CALLERID_SOURCES:
            raise ValueError("callerid_source must be one of " + ", ".join(CALLERID_SOURCES))
        if self.on_prompt_failure not in PROMPT_FAILURE_ACTIONS:
            raise ValueError(
                "on_prompt_failure must be one of " + ", ".join(PROMPT_FAILURE_ACTIONS)
            )
        for name in ("prompt", "sorry", "goodbye"):
            if not getattr(self, name):
                raise ValueError(f"{name} must name a sound")
        for name in ("confirm_digit", "change_digit"):
            if len(getattr(self, name)) != 1 or getattr(self, name) not in "0123456789*#":
                raise ValueError(f"{name} must be one DTMF key: 0-9, * or #")
        if self.confirm_digit == self.change_digit:
            raise ValueError("confirm_digit and change_digit must be different keys")
        for name in ("confirm_attempts", "entry_attempts", "entry_max_digits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.entry_digit_timeout <= 0:
            raise ValueError("entry_digit_timeout must be greater than 0")
        if self.outside_hours not in OUTSIDE_HOURS_ACTIONS:
            raise ValueError("outside_hours must be one of " + ", ".join(OUTSIDE_HOURS_ACTIONS))
        needed = ["readback_prompt", "readback_menu"] if self.readback else []
        if self.outside_hours == "announce":
            needed += ["closed_prompt"]
        if self.hidden_number_entry:
            needed += ["no_number_prompt"]
        if self.hidden_number_entry or self.readback:  # change_digit leads to the entry
            needed += ["entry_prompt", "entry_invalid"]
        for name in needed:
            if not getattr(self, name):
                raise ValueError(f"{name} must name a sound")
        check_number_rules(self.number_pattern, self.number_rewrite)


def check_number_rules(pattern: str, rewrites: Rewrites) -> None:
    """Raise ValueError naming the first rule that is not a usable regular expression."""
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"number_pattern is not a valid regular expression: {error}") from None
    for find, replace in rewrites:
        try:
            re.compile(find).sub(replace, "")
        except (re.error, IndexError) as error:
            raise ValueError(f"number_rewrite rule {find!r}: {error}") from None


@dataclass(frozen=True)
class AriSettings:
    """Where Asterisk's ARI is and who we are there."""

    url: Url = "http://127.0.0.1:8088"
    username: str = "stasis-dnd"
    password: Secret = field(default="", repr=False)
    app: str = "stasis-dnd"
    connect_timeout: float = 3.0
    read_timeout: float = 5.0
    # Calls still in progress at shutdown get this long before they are sent
    # back to the dialplan.
    drain_timeout: Duration = 20.0
    # A PEM file of the CA that signed Asterisk's https certificate (a private
    # CA, or the certificate itself if self-signed); "" means the system's CAs.
    ca_bundle: CaFile = ""


@dataclass(frozen=True)
class CrmSettings:
    """How to reach BGCRM / BGERP and what to send it (docs/crm-contract.md)."""

    url: Url = "http://127.0.0.1:9088"
    style: str = "dynamic"
    class_name: str = "ru.bgcrm.dyn.utils.asterisk.AsteriskIn"
    sub: str = "dndoperator"
    phone_param: str = "aon"
    # Extra fixed parameters, as (name, value) pairs in the order given.
    params: tuple[tuple[str, str], ...] = ()
    method: str = "post"
    username: str = ""
    password: Secret = field(default="", repr=False)
    timeout: float = 5.0
    # Sent with every request so the CRM can recognise a repeat ("" = off).
    request_id_param: str = "requestId"
    # Carries the caller's own number when they keyed in another one to be
    # called at ("" = never sent).
    callerid_param: str = "callerId"
    # "" means the system's CA bundle.
    ca_bundle: CaFile = ""
    # Facts about the call sent as CRM parameters: (CRM parameter name, fact
    # name in CONTEXT_FACTS) pairs; a fact the call lacks is not sent.
    context_params: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        self._check_context_params()
        name = self.callerid_param
        if not name:
            return
        if breaks_crm_answer(name):
            raise ValueError(
                "callerid_param must not be callback: that name breaks the CRM's JSON answer"
            )
        for other in ("phone_param", "request_id_param"):
            if name == getattr(self, other):
                raise ValueError(f"callerid_param must differ from {other} (both are {name!r})")

    def _check_context_params(self) -> None:
        taken = {self.phone_param, self.request_id_param, self.callerid_param}
        taken |= {name for name, _ in self.params}
        taken.discard("")
        seen: set[str] = set()
        for name, fact in self.context_params:
            if fact not in CONTEXT_FACTS:
                raise ValueError(
                    f"context_params: {fact!r} is no fact of a call; known facts:"
                    f" {', '.join(CONTEXT_FACTS)}"
                )
            if breaks_crm_answer(name) or name in taken or name in seen:
                raise ValueError(
                    f"context_params: the CRM parameter {name!r} is taken (by phone_param,"
                    " request_id_param, callerid_param, params, an earlier context_params"
                    " entry, or the CRM's answer: callback)"
                )
            seen.add(name)


@dataclass(frozen=True)
class OutboxSettings:
    """Where stored callback requests wait until the CRM has them."""

    path: str = "/var/lib/stasis-dnd/outbox.sqlite3"
    # A PostgreSQL database the instances of several servers share; "" keeps
    # the SQLite file at `path`. Its password: here, in password_file, or in the URL.
    url: DatabaseUrl = ""
    password: Secret = field(default="", repr=False)
    # Requests older than this are given up (dead-lettered), in seconds.
    max_age: Duration = 24 * 3600.0
    # A repeat "1" from the same number within this many seconds is not sent
    # again; 0 turns this off.
    dedupe_window: Duration = 30 * 60.0
    # Delivered (and duplicate) requests are deleted this many seconds after
    # they finished, so the file stops growing; 0 keeps them forever. Pending
    # and dead requests are never deleted by the app.
    keep: Duration = 30 * 86400.0
    # A write to the outbox that has not finished after this long (a failing
    # disk, NFS, a lock held elsewhere) counts as failed: the CRM is tried
    # directly instead, while the caller waits.
    write_timeout: Duration = 2.0

    def __post_init__(self) -> None:
        if self.write_timeout <= 0:
            raise ValueError("write_timeout must be greater than 0")


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus endpoint; off when listen is empty."""

    listen: HostPort = ""


@dataclass(frozen=True)
class Profile:
    """What callers of some queues hear and what the CRM gets for them: a
    `[profile:NAME]` section over [ivr] and [crm] (`queues`: the `queue=`
    Stasis() values it serves)."""

    name: str
    ivr: IvrSettings = IvrSettings()
    crm: CrmSettings = CrmSettings()
    queues: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    """The whole configuration of one running app."""

    ari: AriSettings = AriSettings()
    ivr: IvrSettings = IvrSettings()
    crm: CrmSettings = CrmSettings()
    outbox: OutboxSettings = OutboxSettings()
    metrics: MetricsSettings = MetricsSettings()
    # The [profile:NAME] sections, in the file's order ([ivr]/[crm] are "default").
    profiles: tuple[Profile, ...] = ()

    @property
    def default_profile(self) -> Profile:
        return Profile(DEFAULT_PROFILE, self.ivr, self.crm)

    def all_profiles(self) -> tuple[Profile, ...]:
        """The default profile, then the named ones."""
        return (self.default_profile, *self.profiles)
