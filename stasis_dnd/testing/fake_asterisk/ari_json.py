"""The JSON shapes Asterisk 22 (ARI 10.0.0) sends, as the fake builds them.

Field names and order follow what a real Asterisk 22.10 sent on this machine
(see tests/testing/test_fake_asterisk.py and docs/asterisk-behaviour.md).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

ASTERISK_ID = "02:00:00:fa:4e:01"
ASTERISK_VERSION = "22.0.0-fake"
AUTH_REALM = 'Basic realm="Asterisk REST Interface"'

# Channel states in which channel operations answer 412 (res/ari/resource_channels.c
# channel_state_invalid): they belong to outbound channels only.
INVALID_STATES = frozenset({"Down", "Rsrvd", "Ringing"})
CHANNEL_STATES = frozenset({"Down", "Rsrvd", "Ring", "Ringing", "Up"})


def timestamp(at: float | None = None) -> str:
    """Asterisk's event time format, e.g. 2026-11-27T05:55:54.381+0000."""
    moment = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def error(message: str) -> dict[str, str]:
    """An ARI error body."""
    return {"message": message}


def channel(
    *,
    channel_id: str,
    name: str,
    state: str,
    caller_name: str,
    caller_number: str,
    context: str,
    priority: int,
    app_name: str,
    app_data: str,
    created: float,
    language: str,
) -> dict[str, Any]:
    """An ARI Channel object for a caller that came in from the dialplan."""
    return {
        "id": channel_id,
        "name": name,
        "state": state,
        "protocol_id": "",
        "caller": {"name": caller_name, "number": caller_number},
        "connected": {"name": "", "number": ""},
        "accountcode": "",
        "dialplan": {
            "context": context,
            "exten": "s",
            "priority": priority,
            "app_name": app_name,
            "app_data": app_data,
        },
        "creationtime": timestamp(created),
        "language": language,
    }


def playback(
    playback_id: str,
    media_uri: str,
    channel_id: str,
    language: str,
    state: str,
    *,
    next_media_uri: str | None = None,
) -> dict[str, str]:
    """An ARI Playback object; state is queued, playing, continuing, done or
    failed. `media_uri` is the part playing; `next_media_uri` the one after it."""
    body = {"id": playback_id, "media_uri": media_uri}
    if next_media_uri is not None:
        body["next_media_uri"] = next_media_uri
    body.update(target_uri=f"channel:{channel_id}", language=language, state=state)
    return body


def event(kind: str, app: str, body: dict[str, Any], first: dict[str, Any] | None = None) -> str:
    """An event message as text; `first` holds fields Asterisk puts before `type`."""
    message: dict[str, Any] = dict(first or {})
    message["type"] = kind
    message["timestamp"] = timestamp()
    message.update(body)
    message["asterisk_id"] = ASTERISK_ID
    message["application"] = app
    return _dumps(message)


def application_replaced(app: str) -> str:
    """The message a replaced WebSocket gets (its fields come in this order)."""
    return _dumps(
        {
            "type": "ApplicationReplaced",
            "timestamp": timestamp(),
            "application": app,
            "asterisk_id": ASTERISK_ID,
        }
    )


def rest_response_parse_error(app: str) -> str:
    """Asterisk 22's answer to a WebSocket text message that is not JSON."""
    return _dumps(
        {
            "type": "RESTResponse",
            "transaction_id": "",
            "request_id": "",
            "status_code": 400,
            "reason_phrase": "Failed to parse request message JSON",
            "uri": "",
            "application": app,
            "timestamp": timestamp(),
            "asterisk_id": ASTERISK_ID,
        }
    )


def application(app: str, channel_ids: list[str]) -> dict[str, Any]:
    """An ARI Application object."""
    return {
        "name": app,
        "channel_ids": channel_ids,
        "bridge_ids": [],
        "endpoint_ids": [],
        "device_names": [],
        "events_allowed": [],
        "events_disallowed": [],
    }


def sound(sound_id: str, languages: tuple[str, ...]) -> dict[str, Any]:
    """An ARI Sound object."""
    return {
        "id": sound_id,
        "formats": [{"language": lang, "format": "slin"} for lang in languages],
    }


def asterisk_info(started: float) -> dict[str, Any]:
    """GET /asterisk/info."""
    return {
        "build": {
            "os": "Linux",
            "kernel": "fake",
            "machine": "fake",
            "options": "",
            "date": "",
            "user": "",
        },
        "system": {"version": ASTERISK_VERSION, "entity_id": ASTERISK_ID},
        "config": {"name": "", "default_language": "en", "setid": {"user": "", "group": ""}},
        "status": {"startup_time": timestamp(started), "last_reload_time": timestamp(started)},
    }


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
