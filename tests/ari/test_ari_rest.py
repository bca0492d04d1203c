"""AriRest against a real HTTP peer on loopback (pytest-httpserver)."""

from __future__ import annotations

import base64
import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from stasis_dnd.ari.rest import (
    AriAuthError,
    AriError,
    AriRest,
    AriUnavailable,
    ChannelNotFound,
)
from stasis_dnd.settings import AriSettings

PASSWORD = "pa55+word&x"


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    return ("127.0.0.1", 0)


def settings_for(url: str, **changes: Any) -> AriSettings:
    options: dict[str, Any] = {
        "url": url,
        "username": "dnd",
        "password": PASSWORD,
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
    }
    options.update(changes)
    return AriSettings(**options)


@pytest.fixture
def rest(httpserver: HTTPServer) -> Iterator[AriRest]:
    client = AriRest(settings_for(httpserver.url_for("").rstrip("/")))
    yield client
    client.close()


def raw_uris(httpserver: HTTPServer) -> list[str]:
    """The request targets as sent on the wire, before any decoding."""
    return [request.environ["RAW_URI"] for request, _ in httpserver.log]


# -- requests as they arrive ---------------------------------------------------


def test_basic_auth_header_is_sent(httpserver: HTTPServer, rest: AriRest) -> None:
    token = base64.b64encode(f"dnd:{PASSWORD}".encode()).decode()
    httpserver.expect_request(
        "/ari/channels/c1/answer", method="POST", headers={"Authorization": f"Basic {token}"}
    ).respond_with_data("", status=204)
    rest.answer("c1")
    httpserver.check_assertions()


def test_play_keeps_plus_and_ampersand_in_query_values(
    httpserver: HTTPServer, rest: AriRest
) -> None:
    httpserver.expect_request(
        "/ari/channels/c1/play/pb-1",
        method="POST",
        query_string={"media": "sound:a+b&lang=xx", "lang": "ru"},
    ).respond_with_json({"id": "pb-1"}, status=201)
    rest.play("c1", "pb-1", "sound:a+b&lang=xx", "ru")
    httpserver.check_assertions()


def test_play_without_language_sends_no_lang(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request("/ari/channels/c1/play/pb-2", method="POST").respond_with_json(
        {"id": "pb-2"}, status=201
    )
    rest.play("c1", "pb-2", "sound:vm-goodbye")
    request, _ = httpserver.log[0]
    assert dict(request.args) == {"media": "sound:vm-goodbye"}


def test_path_segments_are_encoded(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request("/ari/sounds/custom/IVR DND+1").respond_with_json({"id": "x"})
    httpserver.expect_request("/ari/channels/a b/c+d/answer").respond_with_data("", status=204)
    assert rest.sound("custom/IVR DND+1") == {"id": "x"}
    rest.answer("a b/c+d")
    # "/" inside an id must not become a path separator; "+" must not become a space.
    assert raw_uris(httpserver) == [
        "/ari/sounds/custom%2FIVR%20DND%2B1",
        "/ari/channels/a%20b%2Fc%2Bd/answer",
    ]


def test_hangup_is_delete_with_reason_normal(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request(
        "/ari/channels/c1", method="DELETE", query_string={"reason": "normal"}
    ).respond_with_data("", status=204)
    rest.hangup("c1")
    httpserver.check_assertions()


def test_continue_and_stop(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request("/ari/channels/c1/continue", method="POST").respond_with_data(
        "", status=204
    )
    httpserver.expect_request("/ari/playbacks/pb-1", method="DELETE").respond_with_data(
        "", status=204
    )
    rest.continue_in_dialplan("c1")
    assert rest.stop_playback("pb-1") is True
    httpserver.check_assertions()


def test_lookups_return_objects(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request("/ari/channels/c1", method="GET").respond_with_json({"id": "c1"})
    httpserver.expect_request("/ari/applications/stasis-dnd").respond_with_json(
        {"name": "stasis-dnd", "channel_ids": ["c1"]}
    )
    httpserver.expect_request("/ari/asterisk/info").respond_with_json({"system": {}})
    assert rest.get_channel("c1") == {"id": "c1"}
    assert rest.application("stasis-dnd")["channel_ids"] == ["c1"]
    assert rest.asterisk_info() == {"system": {}}


def test_an_answer_that_is_not_an_object_is_an_error(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request("/ari/asterisk/info").respond_with_json([1, 2])
    with pytest.raises(AriError, match="not a JSON object"):
        rest.asterisk_info()


# -- error mapping -------------------------------------------------------------

CHANNEL_OPERATIONS = [
    ("POST", "/ari/channels/c1/answer", lambda r: r.answer("c1")),
    ("POST", "/ari/channels/c1/play/pb", lambda r: r.play("c1", "pb", "sound:x")),
    ("POST", "/ari/channels/c1/continue", lambda r: r.continue_in_dialplan("c1")),
    ("DELETE", "/ari/channels/c1", lambda r: r.hangup("c1")),
    ("GET", "/ari/channels/c1", lambda r: r.get_channel("c1")),
]


@pytest.mark.parametrize("status", [404, 409, 412])
@pytest.mark.parametrize("case", CHANNEL_OPERATIONS)
def test_channel_operations_raise_channel_gone(
    httpserver: HTTPServer, rest: AriRest, status: int, case: tuple[str, str, Any]
) -> None:
    method, path, operation = case
    httpserver.expect_request(path, method=method).respond_with_json(
        {"message": "Channel not found"}, status=status
    )
    with pytest.raises(ChannelNotFound) as caught:
        operation(rest)
    assert caught.value.channel_id == "c1"
    assert caught.value.status == status
    assert "Channel not found" in str(caught.value)


def test_stop_playback_of_a_finished_playback_is_fine(
    httpserver: HTTPServer, rest: AriRest
) -> None:
    httpserver.expect_request("/ari/playbacks/pb-1", method="DELETE").respond_with_json(
        {"message": "Playback not found"}, status=404
    )
    assert rest.stop_playback("pb-1") is False


def test_missing_sound_is_none(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request("/ari/sounds/nope").respond_with_json(
        {"message": "Sound not found"}, status=404
    )
    assert rest.sound("nope") is None


def test_404_outside_channels_is_a_plain_error(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request("/ari/applications/other").respond_with_json(
        {"message": "Application does not exist"}, status=404
    )
    with pytest.raises(AriError) as caught:
        rest.application("other")
    assert type(caught.value) is AriError
    assert caught.value.status == 404
    assert "Application does not exist" in str(caught.value)


def test_401_is_an_auth_error_without_the_password(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request("/ari/channels/c1/answer").respond_with_json(
        {"message": "Authentication required"}, status=401
    )
    with pytest.raises(AriAuthError) as caught:
        rest.answer("c1")
    message = str(caught.value)
    assert "refused the ARI username or password (ari.conf)" in message
    assert PASSWORD not in message


def test_403_read_only_user_is_an_auth_error(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request("/ari/channels/c1/answer").respond_with_json(
        {"message": "Write access denied"}, status=403
    )
    with pytest.raises(AriAuthError, match="read_only"):
        rest.answer("c1")


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_unavailable(httpserver: HTTPServer, rest: AriRest, status: int) -> None:
    httpserver.expect_request("/ari/channels/c1/answer").respond_with_json(
        {"message": "Asterisk not booted"}, status=status
    )
    with pytest.raises(AriUnavailable) as caught:
        rest.answer("c1")
    assert caught.value.status == status
    assert "Asterisk not booted" in str(caught.value)


def test_other_4xx_is_a_plain_error(httpserver: HTTPServer, rest: AriRest) -> None:
    httpserver.expect_request("/ari/channels/c1/play/pb").respond_with_json(
        {"message": "missing media"}, status=400
    )
    with pytest.raises(AriError) as caught:
        rest.play("c1", "pb", "")
    assert type(caught.value) is AriError
    assert caught.value.status == 400


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_error_and_not_followed(
    httpserver: HTTPServer, rest: AriRest, status: int
) -> None:
    elsewhere = HTTPServer(host="127.0.0.1", port=0)
    elsewhere.start()
    try:
        location = elsewhere.url_for("/ari/asterisk/info")
        httpserver.expect_request("/ari/asterisk/info").respond_with_data(
            "", status=status, headers={"Location": location}
        )
        with pytest.raises(AriError) as caught:
            rest.asterisk_info()
        assert elsewhere.log == []
    finally:
        elsewhere.stop()
    assert type(caught.value) is AriError and caught.value.status == status
    assert str(caught.value) == (
        f"ARI at {rest.base_url} answered GET /asterisk/info with a redirect "
        f"({status} to {location}), which is not followed so that the password goes "
        "nowhere else: set [ari] url to the address ARI itself is served at."
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_is_unavailable_without_the_password() -> None:
    url = f"http://dnd:{PASSWORD}@127.0.0.1:{free_port()}"
    with AriRest(settings_for(url)) as client, pytest.raises(AriUnavailable) as caught:
        client.answer("c1")
    message = str(caught.value)
    assert "refused the connection" in message
    assert "127.0.0.1" in message
    assert PASSWORD not in message


def test_read_timeout_is_unavailable() -> None:
    # A listening socket that never answers: the request is sent, no reply comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with (
            AriRest(settings_for(url, read_timeout=0.2)) as client,
            pytest.raises(AriUnavailable) as caught,
        ):
            client.asterisk_info()
    assert "did not answer within 0.2 s" in str(caught.value)
    assert PASSWORD not in str(caught.value)


# -- sharing one client --------------------------------------------------------


class _KeepAliveHandler(BaseHTTPRequestHandler):
    # Werkzeug's test server closes every connection; this one keeps them open.
    protocol_version = "HTTP/1.1"
    client_ports: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        self.client_ports.append(self.client_address[1])
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_keep_alive_reuses_one_connection() -> None:
    _KeepAliveHandler.client_ports = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        with AriRest(settings_for(f"http://127.0.0.1:{server.server_address[1]}")) as client:
            for _ in range(10):
                assert client.asterisk_info() == {"ok": True}
    finally:
        server.shutdown()
        server.server_close()
    assert len(_KeepAliveHandler.client_ports) == 10
    assert len(set(_KeepAliveHandler.client_ports)) == 1


def test_concurrent_calls_from_worker_threads() -> None:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    seen: list[str] = []
    lock = threading.Lock()

    def answer(request: Request) -> Response:
        with lock:
            seen.append(request.path.rsplit("/", 2)[-2])
        return Response(status=204)

    server.expect_request(
        re.compile(r"/ari/channels/[^/]+/answer"), method="POST"
    ).respond_with_handler(answer)
    server.start()
    try:
        with (
            AriRest(settings_for(server.url_for("").rstrip("/")), pool_size=8) as client,
            ThreadPoolExecutor(8) as pool,
        ):
            list(pool.map(client.answer, [f"c{i}" for i in range(100)]))
    finally:
        server.stop()
    assert sorted(seen) == sorted(f"c{i}" for i in range(100))
