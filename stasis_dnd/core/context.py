"""Facts about a call for the CRM, read from the `Stasis()` arguments.

The dialplan passes them after its positional arguments: the first argument
is why the caller came (`TIMEOUT`, `FULL`, ... as `${QUEUESTATUS}`, or
`breakout` followed by the key pressed), then `key=value` arguments:

    Stasis(stasis-dnd,${QUEUESTATUS},queue=999,waited=42,dialled=4951234567,
           linkedid=${CHANNEL(linkedid)},profile=sales)

Any argument can carry text the caller influences (a DID from the trunk, a
variable the dialplan filled from caller data), so every value is cleaned:
control characters removed, capped at `MAX_VALUE` characters. Fact names are
fixed here; an unknown `key=value` argument is ignored and reported.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from stasis_dnd.core.events import Channel

# The first `Stasis()` argument that marks a queue break-out.
BREAKOUT_ARG = "breakout"
# Longer than any queue name, DID or id; short enough for a CRM field.
MAX_VALUE = 64
# `key=value` argument names, and the fact each one fills.
_ARG_FACTS = {
    "queue": "queue",
    "waited": "waited_seconds",
    "dialled": "dialled",
    # ARI's channel JSON lacks it on Asterisk 22: the dialplan passes ${CHANNEL(linkedid)}.
    "linkedid": "linkedid",
    # Which profile serves the call (stasis_dnd.profiles); not sent as given.
    "profile": "profile",
}


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the dialplan told about the call; "" for what it did not."""

    reason: str = ""
    queue: str = ""
    waited_seconds: str = ""
    dialled: str = ""
    linkedid: str = ""
    # The profile the dialplan asked for (the shell chooses the one that serves).
    profile: str = ""
    # `key=value` argument names the app does not know (cleaned, for a log line).
    unknown: tuple[str, ...] = ()

    def facts(self, channel: Channel) -> tuple[tuple[str, str], ...]:
        """(fact name, value) pairs for the CRM: these and the channel's, non-empty only."""
        pairs = (
            ("queue", self.queue),
            ("reason", self.reason),
            ("waited_seconds", self.waited_seconds),
            ("dialled", self.dialled),
            *channel_facts(channel),
        )
        if self.linkedid and not channel.linkedid:
            pairs = (*pairs, ("linkedid", self.linkedid))
        return tuple((name, value) for name, value in pairs if value)


def channel_facts(channel: Channel) -> tuple[tuple[str, str], ...]:
    """The facts the channel itself gives, cleaned, non-empty only."""
    pairs = (
        ("language", clean(channel.language)),
        ("uniqueid", clean(channel.id)),
        ("linkedid", clean(channel.linkedid)),
    )
    return tuple((name, value) for name, value in pairs if value)


def clean(value: str) -> str:
    """`value` without control characters (NUL, CR, LF, ...), stripped, at most MAX_VALUE long."""
    kept = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C")
    return kept.strip()[:MAX_VALUE]


def parse_stasis_args(args: tuple[str, ...]) -> tuple[CallContext, str | None]:
    """The call's context and, for a break-out, the key pressed (else None).

    Never raises: an argument it cannot use is skipped. The key is returned
    as given (the flow compares it with its accept digit)."""
    first = args[0] if args else ""
    reason, rest, key = clean(first), args[1:], None
    if "=" in first:
        reason, rest = "", args  # no reason given: the first argument is a fact
    elif first.lower() == BREAKOUT_ARG:
        reason = BREAKOUT_ARG
        if rest and "=" not in rest[0]:
            key, rest = rest[0], rest[1:]
    values: dict[str, str] = {}
    unknown: list[str] = []
    for arg in rest:
        name, equals, value = arg.partition("=")
        if not equals:
            continue  # positional arguments after the first mean nothing here
        fact = _ARG_FACTS.get(name.strip().lower())
        if fact is None:
            unknown.append(clean(name))
        else:
            values[fact] = clean(value)
    waited = values.get(
        "waited_seconds",
        "",  # pragma: no mutate: any default that is not digits gives ""
    )
    context = CallContext(
        reason=reason,
        queue=values.get("queue", ""),
        waited_seconds=waited if waited.isdigit() and waited.isascii() else "",
        dialled=values.get("dialled", ""),
        linkedid=values.get("linkedid", ""),
        profile=values.get("profile", ""),
        unknown=tuple(unknown),
    )
    return context, key
