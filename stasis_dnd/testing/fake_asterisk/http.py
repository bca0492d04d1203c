"""The fake's HTTP side: ARI routes, the events WebSocket, Basic auth, and the
`/_fake/...` control endpoints a benchmark in another process uses.

Runs on the fake's event loop; `Pbx` holds the state.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from stasis_dnd.testing.fake_asterisk import ari_json, script
from stasis_dnd.testing.fake_asterisk.pbx import Pbx, Reply

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Asterisk drops a WebSocket whose reader is this slow (websocket_write_timeout).
DEFAULT_WRITE_TIMEOUT = 0.1


class Faults:
    """Faults a test switches on; shared by all sockets."""

    def __init__(self) -> None:
        self.flowing = asyncio.Event()  # cleared while the sockets are stalled
        self.flowing.set()


class WebSocketPeer:
    """One events WebSocket: a queue and a writer task, so the PBX never waits."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        faults: Faults,
        write_timeout: float,
        on_gone: Callable[[WebSocketPeer], None],
    ) -> None:
        self.ws = ws
        self.transport = request.transport
        self.faults = faults
        self.write_timeout = write_timeout
        self.on_gone = on_gone
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.gone = asyncio.Event()
        self.retired = False  # replaced by a newer socket: takes no more events

    def send(self, text: str, *, last: bool = False) -> bool:
        if self.retired or self.gone.is_set() or self.ws.closed:
            return False
        self.retired = last
        self.queue.put_nowait(text)
        return True

    async def write(self) -> None:
        while True:
            text = await self.queue.get()
            await self.wait_flowing()
            try:
                await asyncio.wait_for(self.ws.send_str(text), self.write_timeout)
            except (TimeoutError, ConnectionError):
                self.abort()  # like Asterisk: a slow or gone reader loses its socket
                return

    async def wait_flowing(self) -> None:
        """Until the sockets are not stalled (or this one is gone)."""
        if self.faults.flowing.is_set() or self.gone.is_set():
            return
        waits = {asyncio.ensure_future(self.faults.flowing.wait()),
                 asyncio.ensure_future(self.gone.wait())}  # fmt: skip
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    def abort(self) -> None:
        """Cut the TCP connection (no close frame)."""
        if not self.gone.is_set():
            self.gone.set()
            if self.transport is not None:
                self.transport.abort()
            self.on_gone(self)


class AriHttp:
    """Builds the aiohttp application around a `Pbx`."""

    def __init__(
        self, pbx: Pbx, username: str, password: str, write_timeout: float = DEFAULT_WRITE_TIMEOUT
    ) -> None:
        self.pbx = pbx
        self.credentials = f"{username}:{password}".encode()
        self.write_timeout = write_timeout
        self.faults = Faults()
        self.peers: set[WebSocketPeer] = set()
        self.errors: list[str] = []
        self.event_urls: list[str] = []  # path and query of each events request
        # Set by the owner: runs a control-endpoint call placement on the loop.
        self.place_call: Callable[[dict[str, Any]], str] | None = None

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth])
        r = app.router
        r.add_get("/ari/events", self.events)
        r.add_get("/ari/asterisk/info", self._simple(lambda _: (200, self._info())))
        r.add_get("/ari/applications", self._simple(lambda _: (200, self._applications())))
        r.add_get("/ari/applications/{app}", self._simple(self._application))
        r.add_put("/ari/applications/{app}/eventFilter", self._event_filter)
        r.add_get("/ari/sounds/{sound_id}", self._simple(lambda m: self.pbx.sound(m["sound_id"])))
        r.add_get("/ari/channels/{channel_id}", self.channel_request)
        r.add_delete("/ari/channels/{channel_id}", self.channel_request)
        r.add_post("/ari/channels/{channel_id}/answer", self.channel_request)
        r.add_post("/ari/channels/{channel_id}/continue", self.channel_request)
        r.add_get("/ari/channels/{channel_id}/variable", self.channel_request)
        r.add_post("/ari/channels/{channel_id}/variable", self.channel_request)
        r.add_post("/ari/channels/{channel_id}/play", self.channel_request)
        r.add_post("/ari/channels/{channel_id}/play/{playback_id}", self.channel_request)
        r.add_get("/ari/playbacks/{playback_id}", self.playback_request)
        r.add_delete("/ari/playbacks/{playback_id}", self.playback_request)
        r.add_post("/_fake/calls", self.control_place_calls)
        r.add_get("/_fake/calls/{call_id}", self.control_call)
        r.add_get("/_fake/stats", self.control_stats)
        return app

    # --- middlewares ----------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return web.json_response(ari_json.error("Resource not found"), status=404)
        except web.HTTPMethodNotAllowed:
            return web.json_response(ari_json.error("Invalid method"), status=405)
        except web.HTTPException:
            raise
        except Exception as exc:  # a bug in the fake: keep it for FakeAsterisk.check()
            self.errors.append("".join(traceback.format_exception(exc)))
            return web.json_response(ari_json.error(f"fake Asterisk error: {exc}"), status=500)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/ari/") and not self._authorized(request):
            return web.json_response(
                ari_json.error("Authentication required"),
                status=401,
                headers={"WWW-Authenticate": ari_json.AUTH_REALM},
            )
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        given = request.query.get("api_key", "").encode()
        header = request.headers.get("Authorization", "")
        if header[:6].lower() == "basic ":
            try:
                given = base64.b64decode(header[6:].strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
        return hmac.compare_digest(given, self.credentials)

    # --- ARI routes -------------------------------------------------------------

    def _simple(self, answer: Callable[[dict[str, str]], Reply]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            reply = answer(dict(request.match_info))
            # Computed on arrival, answered late (set_rest_delay for all requests).
            await self._delay(None)
            return _reply(reply)

        return handler

    def _info(self) -> dict[str, Any]:
        return ari_json.asterisk_info(self.pbx.started)

    def _applications(self) -> list[dict[str, Any]]:
        if not self.pbx.app_exists():
            return []
        return [ari_json.application(self.pbx.app, self.pbx.channels_in_app())]

    def _application(self, match: dict[str, str]) -> Reply:
        fault = self.pbx.take_fault(match["app"], "application")
        if fault is not None:
            return fault or 500, ari_json.error("Internal Server Error")
        return self.pbx.application(match["app"])

    async def _event_filter(self, request: web.Request) -> web.StreamResponse:
        app, text = request.match_info["app"], await request.text()
        fault = self.pbx.take_fault(app, "event_filter")  # refuse_event_filter()
        if fault is not None:
            return _reply((fault, ari_json.error("Resource not found")))
        if app != self.pbx.app or not self.pbx.app_exists():
            return _reply((404, ari_json.error("Application not found")))
        try:
            body = json.loads(text) if text.strip() else None
        except ValueError:
            return _reply((400, ari_json.error("Invalid JSON")))
        status, error = self.pbx.event_filter.set(body)
        if error is not None:
            return _reply((status, error))
        self.pbx.counters["event_filter_set"] += 1
        return _reply(self.pbx.application(app))

    async def channel_request(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        channel_id = request.match_info["channel_id"]
        await self._delay(channel_id)
        query = request.query
        action = request.path.rsplit("/", 1)[-1] if request.method == "POST" else ""
        if "playback_id" in request.match_info:
            action = "play"
        kind = action or ("hangup" if request.method == "DELETE" else "get")
        fault = self.pbx.take_fault(channel_id, kind)
        if fault is not None:
            self.pbx.record_request(
                channel_id, at=at, method=request.method, path=request.path, query=dict(query),
                status=fault,
            )  # fmt: skip
            if fault == 0 and request.transport is not None:
                request.transport.abort()  # closed before any answer, as by a crash
            return _reply((fault or 500, ari_json.error("Internal Server Error")))
        if action == "play":
            media = query.getall("media", [""])[-1]  # a repeated media=: the last one wins
            playback_id = request.match_info.get("playback_id") or query.get("playbackId")
            status, body = self.pbx.play(channel_id, playback_id, media, query.get("lang", ""))
        elif action == "answer":
            status, body = await self.pbx.answer(channel_id)
        elif action == "continue":
            status, body = self.pbx.continue_in_dialplan(channel_id)
        elif request.path.endswith("/variable"):
            value = query.get("value", "") if request.method == "POST" else None
            status, body = self.pbx.channel_variable(channel_id, query.get("variable", ""), value)
        elif request.method == "DELETE":
            status, body = self.pbx.hangup(channel_id, query.get("reason", ""))
        else:
            status, body = self.pbx.get_channel(channel_id)
        self.pbx.record_request(
            channel_id, at=at, method=request.method, path=request.path, query=dict(query),
            status=status,
        )  # fmt: skip
        return _reply((status, body))

    async def playback_request(self, request: web.Request) -> web.StreamResponse:
        at = time.monotonic()
        playback_id = request.match_info["playback_id"]
        channel_id = self.pbx.playback_channel(playback_id)
        await self._delay(channel_id)
        if request.method == "DELETE":
            status, body = self.pbx.stop_playback(playback_id)
        else:
            status, body = self.pbx.get_playback(playback_id)
        self.pbx.record_request(
            channel_id, at=at, method=request.method, path=request.path, query={}, status=status
        )
        return _reply((status, body))

    async def _delay(self, channel_id: str | None) -> None:
        if channel_id is not None:
            self.pbx.arrivals[channel_id] += 1
        delay = self.pbx.delay_for(channel_id)
        if delay > 0:
            await asyncio.sleep(delay)

    # --- the events WebSocket ---------------------------------------------------

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.event_urls.append(request.path_qs)
        apps = [a for a in request.query.get("app", "").split(",") if a]
        if not apps:
            return web.json_response(ari_json.error("Missing required field app"), status=400)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        peer = WebSocketPeer(ws, request, self.faults, self.write_timeout, self._gone)
        self.peers.add(peer)
        if self.pbx.app in apps:
            self.pbx.attach(peer)
        writer = asyncio.get_running_loop().create_task(peer.write())
        try:
            while not ws.closed and not peer.gone.is_set():
                await peer.wait_flowing()  # a stalled socket reads nothing, not even pings
                if peer.gone.is_set():
                    break
                message = await ws.receive()
                if message.type == WSMsgType.TEXT:
                    self._on_text(peer, message.data)
                elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            self._gone(peer)
            writer.cancel()
            if not ws.closed:
                await ws.close()
        return ws

    def _gone(self, peer: WebSocketPeer) -> None:
        self.peers.discard(peer)
        self.pbx.detach(peer)

    def _on_text(self, peer: WebSocketPeer, text: str) -> None:
        self.pbx.counters["ws_messages_received"] += 1
        try:
            json.loads(text)
        except ValueError:
            peer.send(ari_json.rest_response_parse_error(self.pbx.app))

    def stall(self, stalled: bool) -> None:
        """Stop (or resume) sending and reading on every socket, without closing."""
        if stalled:
            self.faults.flowing.clear()
        else:
            self.faults.flowing.set()
        for peer in self.peers:
            if peer.transport is not None and not peer.transport.is_closing():
                if stalled:
                    peer.transport.pause_reading()
                else:
                    peer.transport.resume_reading()

    def drop_connections(self) -> int:
        """Cut every WebSocket at the TCP level (no close frame)."""
        peers = list(self.peers)
        for peer in peers:
            peer.abort()
        return len(peers)

    def send_raw(self, text: str) -> int:
        """Send text as is on every socket that takes events."""
        return sum(peer.send(text) for peer in list(self.peers))

    # --- control endpoints (no auth: loopback only) ---------------------------

    async def control_place_calls(self, request: web.Request) -> web.StreamResponse:
        try:
            spec = await request.json()
            count = int(spec.pop("count", 1)) if isinstance(spec, dict) else 0
            if count < 1 or count > 100_000:
                raise ValueError("count must be between 1 and 100000")
            spec["script"] = script.parse(spec.get("script", ()))
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response(ari_json.error(f"bad call spec: {exc}"), status=400)
        assert self.place_call is not None
        try:
            ids = [self.place_call(dict(spec)) for _ in range(count)]
        except (ValueError, TypeError) as exc:
            return web.json_response(ari_json.error(f"bad call spec: {exc}"), status=400)
        return web.json_response({"ids": ids}, status=201)

    async def control_call(self, request: web.Request) -> web.StreamResponse:
        call = self.pbx.calls.get(request.match_info["call_id"])
        if call is None:
            return web.json_response(ari_json.error("Call not found"), status=404)
        return web.json_response(call.summary())

    async def control_stats(self, request: web.Request) -> web.StreamResponse:
        counters = dict(self.pbx.counters)
        counters["in_app"] = len(self.pbx.channels_in_app())
        latencies = [
            {"channel": x.channel_id, "event": x.event, "command": x.command, "seconds": x.seconds}
            for x in self.pbx.latencies
        ]
        return web.json_response({"counters": counters, "latencies": latencies})


def _reply(reply: Reply) -> web.StreamResponse:
    status, body = reply
    if body is None:
        return web.Response(status=status)
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))
