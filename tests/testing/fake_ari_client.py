"""An ARI client as the app is, for tests of the fake Asterisk: `requests`
for ARI REST and `websocket-client` for the events socket."""

from __future__ import annotations

import base64
import json
import queue
import threading
from typing import Any

import requests
import websocket

from stasis_dnd.testing.fake_asterisk import FakeAsterisk

USER, PASSWORD, APP = "stasis-dnd", "s3cret", "stasis-dnd"
# Short sounds keep the suite fast; "prompt" outlasts any test that stops it.
SOUNDS = {"short": 0.15, "prompt": 30.0, "custom/IVR_DND_OPERATORS": 30.0}
WAIT = 10.0  # generous: conditions are awaited, never slept for
CLOSED = {"type": "<closed>"}
PONG = {"type": "<pong>"}


class AppClient:
    """An ARI client as the app is: REST session plus an events socket."""

    def __init__(self, fake: FakeAsterisk, auth: str = f"{USER}:{PASSWORD}") -> None:
        self.ari = fake.url + "/ari"
        self.http = requests.Session()
        self.http.auth = (USER, PASSWORD)
        token = base64.b64encode(auth.encode()).decode()
        self.ws = websocket.create_connection(
            fake.url.replace("http://", "ws://") + f"/ari/events?app={APP}",
            header=[f"Authorization: Basic {token}"],
            timeout=WAIT,
        )
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                frame = self.ws.recv_data_frame(True)[1]
            except Exception:
                self.messages.put(CLOSED)
                return
            if frame.opcode == websocket.ABNF.OPCODE_PONG:
                self.messages.put(PONG)
            elif frame.opcode == websocket.ABNF.OPCODE_TEXT:
                text = frame.data.decode()
                try:
                    self.messages.put(json.loads(text))
                except ValueError:
                    self.messages.put({"type": "<raw>", "text": text})
            elif frame.opcode == websocket.ABNF.OPCODE_CLOSE:
                self.messages.put(CLOSED)
                return

    def next(self, timeout: float = WAIT) -> dict[str, Any]:
        return self.messages.get(timeout=timeout)

    def expect(self, *kinds: str) -> list[dict[str, Any]]:
        """The next messages, which must be of these types in this order."""
        got = [self.next() for _ in kinds]
        assert [m["type"] for m in got] == list(kinds)
        return got

    def nothing_within(self, seconds: float) -> bool:
        try:
            self.messages.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def post(self, path: str, **params: str) -> requests.Response:
        return self.http.post(self.ari + path, params=params, timeout=WAIT)

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.ari + path, timeout=WAIT)

    def delete(self, path: str, **params: str) -> requests.Response:
        return self.http.delete(self.ari + path, params=params, timeout=WAIT)

    def close(self) -> None:
        self.ws.close()


def start_call(fake: FakeAsterisk, app: AppClient, **options: Any) -> str:
    fake.place_call(**options)
    (start,) = app.expect("StasisStart")
    return str(start["channel"]["id"])
