"""A BGCRM / BGERP emulator on loopback, for tests, the demo and benchmarks.

It speaks the CRM's contract (docs/crm-contract.md) for both endpoint styles,
`/admin/dynamic.do?action=runDynamicClass` and
`/admin/run.do?method=runClass&iface=event`, records every request it gets and
misbehaves on demand (the replies are in `crm_replies`):

    with CrmEmulator("crm", "secret") as crm:
        crm.script(SERVER_ERROR, SERVER_ERROR)   # the next two answers are 500s
        ...                                      # then {"status":"ok"} again
        crm.for_number("+79001234567", SERVER_ERROR)  # this number: 500, always
        assert crm.requests_for("+79001234567")[0].param("sub") == "dndoperator"
        crm.outage()                             # connections are refused
        crm.restore()

Also a standalone server that prints each request it gets:
`python -m stasis_dnd.testing.crm_emulator --port 9088 --username U --password P`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from stasis_dnd.testing.crm_replies import (
    DEFAULT_CLASS,
    HUGE_BYTES,
    LOGIN_PAGE,
    OK,
    Received,
    Reply,
    describe,
)


class CrmEmulator:
    """A loopback HTTP server that answers as BGERP does; see the module doc."""

    def __init__(
        self,
        username: str,
        password: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        class_name: str = DEFAULT_CLASS,
        also_classes: tuple[str, ...] = (),
        phone_param: str = "aon",
        request_id_param: str = "requestId",
        on_request: Callable[[Received], None] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.username = username
        self.password = password
        self.class_name = class_name
        # Further classes it runs (a CRM with one class per profile).
        self.also_classes = also_classes
        self.phone_param = phone_param
        self.request_id_param = request_id_param
        self.default = OK
        self._host = host
        self._port = port
        self._on_request = on_request
        self._tls = tls
        self._script: deque[Reply] = deque()
        self._per_number: dict[str, Reply] = {}
        self._requests: list[Received] = []
        self._errors: list[BaseException] = []
        self._changed = threading.Condition()
        self._closing = threading.Event()
        # Open client connections: an outage cuts kept-alive ones too.
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle -----------------------------------------------------------

    def start(self) -> CrmEmulator:
        """Listen (on the same port again after an `outage()`)."""
        if self._server is not None:
            return self
        self._closing.clear()
        server = _Server((self._host, self._port), self._handler_class())
        server.daemon_threads = True
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="crm-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open connections; new ones are refused until `start()`."""
        server, self._server = self._server, None
        if server is None:
            return
        self._closing.set()  # slow answers stop waiting
        server.shutdown()
        server.server_close()
        with self._changed:
            connections, self._connections = set(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def outage(self) -> None:
        """The CRM goes down: connections are refused (same as `stop()`)."""
        self.stop()

    def restore(self) -> None:
        """The CRM is back on the same port."""
        self.start()

    def __enter__(self) -> CrmEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The base URL for `[crm] url`."""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{self._host}:{self._port}"

    # --- what the test wants ---------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with `replies`, in order, then `default`."""
        with self._changed:
            self._script.extend(replies)

    def for_number(self, phone: str, reply: Reply) -> None:
        """Answer every request for `phone` with `reply` (until `clear()`), taking
        nothing from the script: a class that fails on one number does this."""
        with self._changed:
            self._per_number[phone] = reply

    def clear(self) -> None:
        """Forget recorded requests, scripted replies, per-number replies and
        errors; answer ok."""
        with self._changed:
            self._script.clear()
            self._per_number.clear()
            self._requests.clear()
            self._errors.clear()
            self.default = OK

    def check(self) -> None:
        """Re-raise the first error raised in a handler thread, if any."""
        with self._changed:
            if self._errors:
                raise self._errors[0]

    # --- what the emulator saw ----------------------------------------------------

    @property
    def requests(self) -> list[Received]:
        """Every request received, in arrival order."""
        with self._changed:
            return list(self._requests)

    def requests_for(self, phone: str) -> list[Received]:
        """Requests whose phone parameter was exactly `phone`."""
        return [r for r in self.requests if r.param(self.phone_param) == phone]

    def delivered(self) -> list[Received]:
        """Requests answered with `{"status":"ok"}`, in order."""
        return [r for r in self.requests if r.answer == "ok"]

    def delivered_ids(self) -> list[str]:
        """Request ids of the requests answered with `{"status":"ok"}`, in order."""
        return [r.request_id for r in self.delivered()]

    def delivered_phones(self) -> list[str]:
        """Phone numbers of the requests answered with `{"status":"ok"}`, in order."""
        return [r.param(self.phone_param) or "" for r in self.delivered()]

    def wait_for(self, condition: Callable[[CrmEmulator], bool], timeout: float = 10.0) -> bool:
        """Wait until `condition(self)` holds after a request; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if condition(self):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.2))

    # --- the server side -------------------------------------------------------------

    def _next_reply(self, phone: str | None) -> Reply:
        with self._changed:
            if phone is not None and phone in self._per_number:
                return self._per_number[phone]
            return self._script.popleft() if self._script else self.default

    def _record(self, received: Received) -> None:
        with self._changed:
            self._requests.append(received)
            self._changed.notify_all()
        if self._on_request is not None:
            self._on_request(received)

    def _fail(self, error: BaseException) -> None:
        with self._changed:
            self._errors.append(error)
            self._changed.notify_all()

    def _answer(
        self, method: str, path: str, params: list[tuple[str, str]]
    ) -> tuple[int, str, bytes, str]:
        """(status, content type, body, answer label) for one request; status 0:
        close the connection without an answer."""
        values = dict(params)
        reply = self._next_reply(values.get(self.phone_param))
        if reply.delay:
            self._closing.wait(reply.delay)
        if reply.kind == "cut":
            return 0, "", b"", reply.kind
        if reply.kind == "server_error":
            return 500, "text/plain", b"Internal Server Error", reply.kind
        if reply.kind == "status":
            return reply.status, "text/plain", f"HTTP {reply.status}".encode(), reply.kind
        if reply.kind == "huge":
            return 200, "application/json", b'{"status":"ok","data":"' + b"x" * HUGE_BYTES, "huge"
        if reply.kind == "invalid_json":
            return 200, "application/json", b'{"status": "ok", data', reply.kind
        if reply.kind == "login_page":
            return 200, "text/html; charset=UTF-8", LOGIN_PAGE.encode(), reply.kind
        as_json = values.get("responseType") == "json"
        if (values.get("j_username"), values.get("j_password")) != (self.username, self.password):
            if as_json:
                return 401, "text/plain; charset=UTF-8", b"Login failed", "unauthorized"
            return 200, "text/html; charset=UTF-8", LOGIN_PAGE.encode(), "login_page"
        if not _endpoint_matches(path, values):
            return 404, "text/plain", b"Not Found", "not_found"
        if not as_json:
            # Without responseType=json BGERP renders a page, not JSON.
            return 200, "text/html; charset=UTF-8", b"<html><body>OK</body></html>", "html"
        document: dict[str, object]
        if values.get("class") not in (self.class_name, *self.also_classes):
            document = {"status": "error", "message": f"Class not found: {values.get('class')}"}
            kind = "error"
        elif reply.kind == "error":
            document, kind = {"status": "error", "message": reply.message}, "error"
        else:
            document = {"status": "ok", "message": "", "data": {}, "eventList": []}
            kind = "ok"
        body = json.dumps(document, ensure_ascii=False)
        if "callback" in values:
            return 200, "application/javascript", f"{values['callback']}({body})".encode(), "jsonp"
        return 200, "application/json; charset=UTF-8", body.encode(), kind

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Tomcat does
            # Headers and body go out as separate writes; with Nagle on, a
            # keep-alive client waits ~40 ms for the second.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with emulator._changed:
                    emulator._connections.add(self.connection)

            def finish(self) -> None:
                with emulator._changed:
                    emulator._connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def _serve(self, method: str) -> None:
                try:
                    parts = urlsplit(self.path)
                    in_url = parse_qsl(parts.query, keep_blank_values=True)
                    params = list(in_url)
                    length = int(self.headers.get("Content-Length") or 0)
                    body = self.rfile.read(length) if length else b""
                    if method == "POST" and body:
                        text = body.decode("utf-8", errors="replace")
                        params += parse_qsl(text, keep_blank_values=True)
                    status, ctype, payload, label = emulator._answer(method, parts.path, params)
                    request_id = dict(params).get(emulator.request_id_param, "")
                    received = Received(
                        method,
                        parts.path,
                        tuple(params),
                        request_id,
                        time.time(),
                        label,
                        tuple(in_url),
                        self.client_address[1],
                    )
                    emulator._record(received)
                    if status == 0:
                        self.close_connection = True
                        return
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", "/login")
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except ConnectionError:
                    self.close_connection = True  # the client gave up (timed out, saw enough)
                except Exception as exc:  # re-raised in the test by check()
                    emulator._fail(exc)
                    self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass  # requests are recorded (and printed by main()), not logged

        return Handler


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client closing its kept-alive connection is normal, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def _endpoint_matches(path: str, values: dict[str, str]) -> bool:
    if path.endswith("/admin/dynamic.do"):
        return values.get("action") == "runDynamicClass"
    if path.endswith("/admin/run.do"):
        return values.get("method") == "runClass" and values.get("iface") == "event"
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stasis_dnd.testing.crm_emulator",
        description="A BGCRM / BGERP emulator that prints every request it gets.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9088)
    parser.add_argument("--username", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--class", dest="class_name", default=DEFAULT_CLASS)
    parser.add_argument("--phone-param", default="aon")
    args = parser.parse_args(argv)

    def show(received: Received) -> None:
        print(describe(received), flush=True)

    emulator = CrmEmulator(
        args.username,
        args.password,
        host=args.host,
        port=args.port,
        class_name=args.class_name,
        phone_param=args.phone_param,
        on_request=show,
    )
    try:
        emulator.start()
    except OSError as exc:
        print(f"crm_emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}")
        return 1
    print(f"CRM emulator listening on {emulator.url} (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
