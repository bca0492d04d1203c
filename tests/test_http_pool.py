"""The keep-alive pool against a raw HTTP/1.1 peer that closes connections the
way servers do: after an idle while, or just as a request arrives."""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator

import pytest

from stasis_dnd import http_pool
from stasis_dnd.http_pool import HttpPool

# What the peer does with a request: answer and keep the connection, answer and
# close it (FIN), or close it without answering.
ANSWER, ANSWER_AND_CLOSE, CLOSE = "answer", "answer+close", "close"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Peer:
    """One listening socket on loopback; `plan(n)` says what to do with the
    n-th request (counting from 0). `seen` holds (connection number, request
    line) for every request that arrived, `heads` its whole head; `answer` is
    what it answers."""

    def __init__(self, plan: Callable[[int], str], answer: bytes = OK) -> None:
        self._plan = plan
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.seen: list[tuple[int, str]] = []
        self.heads: list[str] = []  # each request's whole head, in order
        self.connections = 0
        self._lock = threading.Lock()
        self._to_reset: set[int] = set()
        self._threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self, number: int) -> None:
        """Reset (RST) connection `number` while it is idle."""
        with self._lock:
            self._to_reset.add(number)

    def close(self) -> None:
        self._listener.close()
        for thread in self._threads:
            thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.connections += 1
                number = self.connections
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        buffer = b""
        with sock:
            while True:
                while b"\r\n\r\n" not in buffer:
                    if not select.select([sock], [], [], 0.02)[0]:
                        with self._lock:
                            if number in self._to_reset:
                                _reset(sock)
                                return
                        continue
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = _content_length(head)
                while len(buffer) < length:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    buffer += chunk
                buffer = buffer[length:]
                with self._lock:
                    index = len(self.seen)
                    self.seen.append((number, head.split(b"\r\n")[0].decode()))
                    self.heads.append(head.decode())
                action = self._plan(index)
                if action == CLOSE:
                    return
                sock.sendall(self._answer)
                if action == ANSWER_AND_CLOSE:
                    return  # as a server whose keep-alive timeout ran out


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _reset(sock: socket.socket) -> None:
    # Linger 0: close() sends RST instead of FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.fixture
def make_peer() -> Iterator[Callable[..., Peer]]:
    peers: list[Peer] = []

    def make(plan: Callable[[int], str], answer: bytes = OK) -> Peer:
        peers.append(Peer(plan, answer))
        return peers[-1]

    yield make
    for peer in peers:
        peer.close()


def pool_for(peer: Peer) -> HttpPool:
    return HttpPool(
        f"http://127.0.0.1:{peer.port}",
        headers={"Accept": "application/json"},
        connect_timeout=2.0,
        read_timeout=2.0,
    )


def wait_idle_closed(pool: HttpPool) -> None:
    """Until the pool's idle connection has seen the peer's close (FIN or RST)."""
    [conn] = pool._idle
    assert conn.sock is not None
    readable, _, _ = select.select([conn.sock], [], [], 10)
    assert readable, "the peer's close never reached the client"


def plan_of(*actions: str) -> Callable[[int], str]:
    return lambda n: actions[n] if n < len(actions) else ANSWER


def test_keep_alive_connection_is_reused(make_peer: Callable[..., Peer]) -> None:
    peer = make_peer(plan_of())
    pool = pool_for(peer)
    for _ in range(3):
        assert pool.request("GET", "/ari/asterisk/info").body == b"ok"
    pool.close()
    assert peer.connections == 1


def test_a_request_s_content_type_goes_with_that_request_only(
    make_peer: Callable[..., Peer],
) -> None:
    peer = make_peer(plan_of())
    pool = pool_for(peer)
    body = b'{"allowed": []}'
    assert pool.request("PUT", "/ari/x", body=body, content_type="application/json").body == b"ok"
    assert pool.request("GET", "/ari/y").body == b"ok"
    pool.close()
    assert peer.connections == 1  # the body was read: the connection went on
    put, get = (head.lower().split("\r\n") for head in peer.heads)
    assert "content-type: application/json" in put
    assert f"content-length: {len(body)}" in put
    assert not [line for line in get if line.startswith("content-type")]
    assert "accept: application/json" in put
    assert "accept: application/json" in get


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_connection_the_server_closed_while_idle_is_replaced(
    make_peer: Callable[..., Peer], method: str
) -> None:
    peer = make_peer(plan_of(ANSWER_AND_CLOSE))
    pool = pool_for(peer)
    assert pool.request("GET", "/ari/asterisk/info").status == 200
    wait_idle_closed(pool)
    # Noticed before the request goes out: any method is safe.
    assert pool.request(method, "/ari/channels/c1/play/p1").body == b"ok"
    pool.close()
    assert peer.seen == [
        (1, "GET /ari/asterisk/info HTTP/1.1"),
        (2, f"{method} /ari/channels/c1/play/p1 HTTP/1.1"),
    ]


def test_a_reset_connection_refuses_the_request_and_even_a_post_goes_again(
    make_peer: Callable[..., Peer], monkeypatch: pytest.MonkeyPatch
) -> None:
    peer = make_peer(plan_of())
    pool = pool_for(peer)
    pool.request("GET", "/ari/asterisk/info")
    peer.reset(1)
    wait_idle_closed(pool)
    # As if the reset landed just after the pool's check that the connection is open.
    monkeypatch.setattr(http_pool, "_dropped", lambda conn: False)
    # The send fails at once: nothing of the POST was taken, so it goes again.
    assert pool.request("POST", "/ari/channels/c1/continue").body == b"ok"
    pool.close()
    assert peer.seen == [
        (1, "GET /ari/asterisk/info HTTP/1.1"),
        (2, "POST /ari/channels/c1/continue HTTP/1.1"),
    ]


def test_closed_without_an_answer_a_get_goes_again_on_a_new_connection(
    make_peer: Callable[..., Peer],
) -> None:
    peer = make_peer(plan_of(ANSWER, CLOSE))
    pool = pool_for(peer)
    pool.request("GET", "/ari/asterisk/info")
    assert pool.request("DELETE", "/ari/channels/c1").body == b"ok"
    pool.close()
    assert peer.seen == [
        (1, "GET /ari/asterisk/info HTTP/1.1"),
        (1, "DELETE /ari/channels/c1 HTTP/1.1"),
        (2, "DELETE /ari/channels/c1 HTTP/1.1"),
    ]


def test_closed_without_an_answer_a_post_is_not_sent_twice(
    make_peer: Callable[..., Peer],
) -> None:
    # The server may have acted on it (started the playback): the caller decides.
    peer = make_peer(plan_of(ANSWER, CLOSE))
    pool = pool_for(peer)
    pool.request("GET", "/ari/asterisk/info")
    with pytest.raises(http.client.RemoteDisconnected):
        pool.request("POST", "/ari/channels/c1/play/p1")
    pool.close()
    assert peer.seen == [
        (1, "GET /ari/asterisk/info HTTP/1.1"),
        (1, "POST /ari/channels/c1/play/p1 HTTP/1.1"),
    ]
    assert peer.connections == 1


def test_a_new_connection_closed_without_an_answer_is_an_error_not_a_loop(
    make_peer: Callable[..., Peer],
) -> None:
    peer = make_peer(lambda n: CLOSE)
    pool = pool_for(peer)
    with pytest.raises(http.client.RemoteDisconnected):
        pool.request("GET", "/ari/asterisk/info")
    pool.close()
    assert peer.connections == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_the_answer_and_is_not_followed(
    status: int, make_peer: Callable[..., Peer]
) -> None:
    elsewhere = make_peer(plan_of())
    location = f"http://127.0.0.1:{elsewhere.port}/ari/asterisk/info"
    redirect = f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
    pool = pool_for(make_peer(plan_of(), redirect.encode()))
    reply = pool.request("GET", "/ari/asterisk/info")
    pool.close()
    assert (reply.status, reply.location) == (status, location)
    assert elsewhere.connections == 0


# --- an answer read as it arrives (the CRM client's way) ----------------------------


def test_an_answer_read_to_its_end_keeps_its_connection(make_peer: Callable[..., Peer]) -> None:
    peer = make_peer(plan_of())
    pool = pool_for(peer)
    for _ in range(2):
        with pool.exchange("GET", "/x") as response:
            while response.read1(1):
                pass
    pool.close()
    assert peer.connections == 1


def test_an_answer_left_unread_closes_its_connection(make_peer: Callable[..., Peer]) -> None:
    peer = make_peer(plan_of())
    pool = pool_for(peer)
    for _ in range(2):
        with pool.exchange("GET", "/x") as response:
            assert response.read1(1) == b"o"
    pool.close()
    assert peer.connections == 2


def test_a_request_s_own_timeouts_do_not_stay_with_its_connection(
    make_peer: Callable[..., Peer],
) -> None:
    pool = pool_for(make_peer(plan_of()))
    with pool.exchange("GET", "/x", timeouts=(0.5, 0.7)) as response:
        assert response.fp is not None
        assert response.fp.raw._sock.gettimeout() == 0.7  # type: ignore[attr-defined]
        response.read()
    [conn] = pool._idle
    assert conn.sock is not None
    assert conn.sock.gettimeout() == 2.0
    pool.close()


def test_through_a_proxy_plain_http_names_the_whole_url(make_peer: Callable[..., Peer]) -> None:
    proxy = make_peer(plan_of())
    pool = HttpPool(
        "http://crm.invalid:8080",
        headers={},
        connect_timeout=2.0,
        read_timeout=2.0,
        proxy=f"pu:pw@127.0.0.1:{proxy.port}",
    )
    assert pool.request("GET", "/admin/run.do").body == b"ok"
    pool.close()
    assert proxy.seen == [(1, "GET http://crm.invalid:8080/admin/run.do HTTP/1.1")]


def test_a_proxy_that_is_not_plain_http_is_refused_in_a_sentence() -> None:
    with pytest.raises(ValueError, match=r"^the proxy proxy\.example is not an http:// proxy$"):
        HttpPool(
            "https://crm.example",
            headers={},
            connect_timeout=1.0,
            read_timeout=1.0,
            tls=ssl.create_default_context(),
            proxy="https://proxy.example:3128",
        )


@pytest.mark.parametrize(
    ("url", "variables", "proxy"),
    [
        ("https://crm.example/x", {"HTTPS_PROXY": "http://p:1"}, "http://p:1"),
        ("http://crm.example/x", {"HTTPS_PROXY": "http://p:1"}, ""),
        ("http://crm.example/x", {"HTTP_PROXY": "http://p:2"}, "http://p:2"),
        ("http://crm.example/x", {"ALL_PROXY": "http://p:3"}, "http://p:3"),
        ("https://crm.example/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example"}, ""),
        ("https://crm.example/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example"}, ""),
        (
            "https://crm.example/x",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "rm.example"},
            "http://p:1",
        ),
        (
            "https://crm.example:8443/x",
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "crm.example"},
            "",
        ),
    ],
)
def test_the_environment_names_the_proxy_for_a_url(
    url: str, variables: dict[str, str], proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert http_pool.environment_proxy(url) == proxy
