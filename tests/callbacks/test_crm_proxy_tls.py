"""The CRM client through the environment's proxy and over https: HTTPS_PROXY
(a CONNECT tunnel) and HTTP_PROXY (an absolute URI) to a loopback proxy,
NO_PROXY going around it, and the certificates it trusts (`[crm] ca_bundle`,
SSL_CERT_FILE, REQUESTS_CA_BUNDLE when the system has no CAs) with a private
CA made by trustme, and the sentence a certificate of another CA gives."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from crm_servers import ANY_PATH, OK
from pytest_httpserver import HTTPServer

from stasis_dnd.callbacks.crm import CrmClient, CrmOutcome, CrmResult
from stasis_dnd.settings import CrmSettings

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


class ConnectProxy:
    """A loopback proxy: CONNECT opens a tunnel to the named host; a request for
    an absolute URI is answered by the proxy itself with `OK`. `seen` holds the
    request line and the Proxy-Authorization header of each request."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.seen: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self._listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            line, *headers = head.decode("latin-1").split("\r\n")
            auth = "".join(
                h.split(":", 1)[1].strip()
                for h in headers
                if h.lower().startswith("proxy-authorization:")
            )
            self.seen.append((line, auth))
            method, target, _ = line.split(" ")
            if method != "CONNECT":
                # The whole body before the close: unread data would make it a reset.
                sizes = [h[15:] for h in headers if h.lower().startswith("content-length:")]
                length = int(sizes[0]) if sizes else 0
                while len(rest) < length and (chunk := conn.recv(65536)):
                    rest += chunk
                reply = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                reply += f"Content-Length: {len(OK)}\r\nConnection: close\r\n\r\n{OK}"
                conn.sendall(reply.encode())
                return
            host, _, port = target.rpartition(":")
            with socket.create_connection((host, int(port))) as upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                upstream.sendall(rest)
                pipe = threading.Thread(target=_pipe, args=(upstream, conn), daemon=True)
                pipe.start()
                _pipe(conn, upstream)
                pipe.join(5)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    server = ConnectProxy()
    yield server
    server.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def https(ca: trustme.CA) -> Iterator[HTTPServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.expect_request(ANY_PATH).respond_with_data(OK, content_type="application/json")
    server.start()
    yield server
    server.clear()
    server.stop()


def send(url: str, ca_bundle: str = "") -> CrmResult:
    settings = CrmSettings(url=url, username="u", password="secret-pw", ca_bundle=ca_bundle)
    crm = CrmClient(settings, timeout=5.0)
    try:
        return crm.send("+79001234567", "r1")
    finally:
        crm.close()


# --- the proxy ---------------------------------------------------------------------


def test_https_goes_through_the_proxy_of_https_proxy_in_a_tunnel(
    https: HTTPServer, proxy: ConnectProxy, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    port = https.port
    assert send(https.url_for(""), ca_bundle=ca_file).delivered
    [(line, auth)] = proxy.seen
    assert (line.rpartition(" ")[0], auth) == (f"CONNECT 127.0.0.1:{port}", "")
    [(request, _)] = https.log
    assert request.form["j_password"] == "secret-pw"  # inside the tunnel, not to the proxy


def test_the_proxy_s_own_login_goes_to_the_proxy(
    https: HTTPServer, proxy: ConnectProxy, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("://", "://pu:p%40ss@"))
    assert send(https.url_for(""), ca_bundle=ca_file).delivered
    [(_, auth)] = proxy.seen
    assert auth == "Basic cHU6cEBzcw=="  # pu:p@ss


def test_plain_http_goes_to_the_proxy_of_http_proxy_as_an_absolute_uri(
    proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    assert send("http://crm.invalid:8080/bgerp").delivered
    [(line, _)] = proxy.seen
    assert line == "POST http://crm.invalid:8080/bgerp/admin/dynamic.do HTTP/1.1"


def test_https_proxy_is_not_used_for_plain_http(
    httpserver: HTTPServer, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    httpserver.expect_request(ANY_PATH).respond_with_data(OK)
    assert send(httpserver.url_for("")).delivered
    assert proxy.seen == []


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "*", "example.org,127.0.0.1"])
def test_a_host_in_no_proxy_is_reached_directly(
    https: HTTPServer,
    proxy: ConnectProxy,
    ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert send(https.url_for(""), ca_bundle=ca_file).delivered
    assert proxy.seen == []
    assert len(https.log) == 1


def test_a_proxy_that_refuses_the_tunnel_pauses_all_requests(
    https: HTTPServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
    result = send(https.url_for(""), ca_bundle=ca_file)
    assert result.outcome is CrmOutcome.UNAVAILABLE
    assert https.log == []


# --- the certificates trusted ------------------------------------------------------


def test_the_ca_bundle_setting_is_trusted(https: HTTPServer, ca_file: str) -> None:
    assert send(https.url_for(""), ca_bundle=ca_file).delivered


def test_ssl_cert_file_is_trusted(
    https: HTTPServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    assert send(https.url_for("")).delivered


def test_requests_ca_bundle_is_trusted_where_the_system_has_no_cas(
    https: HTTPServer, ca_file: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "none.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "none"))
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    assert send(https.url_for("")).delivered


def test_a_certificate_of_another_ca_pauses_all_with_openssl_s_reason(
    https: HTTPServer, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    result = send(https.url_for(""), ca_bundle=str(other))
    assert result.outcome is CrmOutcome.UNAVAILABLE
    assert result.detail.startswith(
        "TLS: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
        "unable to get local issuer certificate (_ssl.c:"
    )
    assert https.log == []


def test_without_the_ca_a_private_certificate_is_refused(
    https: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    result = send(https.url_for(""))
    assert result.outcome is CrmOutcome.UNAVAILABLE
    assert result.detail.startswith("TLS: [SSL: CERTIFICATE_VERIFY_FAILED]")
