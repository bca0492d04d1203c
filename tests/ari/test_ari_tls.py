"""https and wss to ARI: certificates verified against `[ari] ca_bundle` or the
system's CAs, and every way verification fails told as one sentence that says
what to fix (AriRest against pytest-httpserver with a trustme certificate,
EventStream against the fake Asterisk, the config key's own checks)."""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pytest_httpserver import HTTPServer

from stasis_dnd.ari.events import EventStream
from stasis_dnd.ari.rest import AriCertificateError, AriError, AriRest, AriUnavailable
from stasis_dnd.config import ConfigError, load_settings
from stasis_dnd.settings import AriSettings
from stasis_dnd.testing.fake_asterisk import FakeAsterisk
from stasis_dnd.tls import certificate_problem

PASSWORD = "tls-Secret-1"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(*(names or ("127.0.0.1",))).configure_cert(context)
    return context


def settings_for(url: str, **changes: Any) -> AriSettings:
    options: dict[str, Any] = {"url": url, "username": "dnd", "password": PASSWORD}
    options.update(connect_timeout=2.0, read_timeout=2.0, **changes)
    return AriSettings(**options)


@contextlib.contextmanager
def https_server(context: ssl.SSLContext) -> Iterator[HTTPServer]:
    """An ARI that answers GET /ari/asterisk/info over https."""
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.expect_request("/ari/asterisk/info").respond_with_json({"system": {"version": "22"}})
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


@pytest.fixture
def https(ca: trustme.CA) -> Iterator[HTTPServer]:
    with https_server(server_context(ca)) as server:
        yield server


def test_ca_bundle_is_trusted(https: HTTPServer, ca_file: str) -> None:
    url = https.url_for("").rstrip("/")
    assert url.startswith("https://127.0.0.1:")
    with AriRest(settings_for(url, ca_bundle=ca_file)) as client:
        assert client.asterisk_info() == {"system": {"version": "22"}}


def test_without_ca_bundle_a_private_ca_is_refused_with_what_to_fix(https: HTTPServer) -> None:
    url = https.url_for("").rstrip("/")
    with AriRest(settings_for(url)) as client, pytest.raises(AriCertificateError) as caught:
        client.asterisk_info()
    assert isinstance(caught.value, AriUnavailable)
    assert str(caught.value) == (
        f"ARI at {url}/ari presented a certificate not signed by a trusted CA "
        "(unable to get local issuer certificate): set [ari] ca_bundle to the PEM file of "
        "the CA that signed Asterisk's certificate (for a self-signed certificate, the "
        "certificate itself)."
    )
    assert https.log == []  # no request crossed the unverified connection


def test_a_ca_bundle_of_another_ca_is_named(https: HTTPServer, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    url = https.url_for("").rstrip("/")
    with (
        AriRest(settings_for(url, ca_bundle=str(other))) as client,
        pytest.raises(AriCertificateError, match=r"not signed by the CA in \[ari\] ca_bundle "),
    ):
        client.asterisk_info()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_certificate_for_another_host_name(ca: trustme.CA, ca_file: str, host: str) -> None:
    with (
        https_server(server_context(ca, "asterisk.example")) as server,
        AriRest(settings_for(f"https://{host}:{server.port}", ca_bundle=ca_file)) as client,
        pytest.raises(AriCertificateError) as caught,
    ):
        client.asterisk_info()
    message = str(caught.value)
    assert message.startswith(f"ARI at {client.base_url} presented a certificate for another host")
    assert "put a host name the certificate names in [ari] url" in message


def test_https_to_a_plain_http_port_says_so(httpserver: HTTPServer) -> None:
    url = httpserver.url_for("").rstrip("/").replace("http://", "https://")
    with AriRest(settings_for(url)) as client, pytest.raises(AriUnavailable) as caught:
        client.asterisk_info()
    assert not isinstance(caught.value, AriCertificateError)
    assert "did not answer in TLS (wrong version number): put Asterisk's TLS port" in str(
        caught.value
    )


def test_an_unusable_ca_bundle_is_one_sentence(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(AriError, match=rf"^\[ari\] ca_bundle: CA file {missing} does not exist"):
        AriRest(settings_for("https://127.0.0.1:9", ca_bundle=str(missing)))
    with pytest.raises(ValueError, match=f"CA file {missing} does not exist"):
        EventStream(settings_for("https://127.0.0.1:9", ca_bundle=str(missing)), print)


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (10, "presented a certificate outside its validity dates (certificate has expired)"),
        (9, "renew Asterisk's certificate (http.conf tlscertfile), or check this machine's clock"),
        (26, "failed verification (unsupported certificate purpose): check Asterisk's"),
    ],
)
def test_other_certificate_problems(code: int, fix: str) -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_code = code
    error.verify_message = {
        9: "certificate is not yet valid",
        10: "certificate has expired",
        26: "unsupported certificate purpose",
    }[code]
    assert fix in certificate_problem(error, "")


# -- the event socket ------------------------------------------------------------


def test_wss_with_ca_bundle_connects_and_untrusted_is_an_error_log(
    ca: trustme.CA, ca_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeAsterisk("dnd", PASSWORD, "stasis-dnd", tls=server_context(ca)) as fake:
        trusting = EventStream(settings_for(fake.url, ca_bundle=ca_file), lambda message: None)
        assert trusting.url.startswith("wss://127.0.0.1:")
        trusting.start()
        try:
            assert trusting.wait_connected(10)
            fake.wait_connected(10)
        finally:
            assert trusting.stop(5)

        caplog.set_level(logging.ERROR, logger="stasis_dnd.ari.events")
        untrusting = EventStream(settings_for(fake.url), lambda message: None)
        untrusting.start()
        try:
            deadline = time.monotonic() + 20
            while "event=ari_connect_failed" not in caplog.text:
                assert time.monotonic() < deadline, "no connect failure logged at ERROR"
                time.sleep(0.05)
        finally:
            assert untrusting.stop(5)
        assert not untrusting.connected
        assert 'reason="Asterisk presented a certificate not signed by a trusted CA' in caplog.text
        assert "set [ari] ca_bundle to the PEM file of the CA" in caplog.text


# -- the config key ----------------------------------------------------------------


def test_config_accepts_a_pem_ca_file(ca_file: str) -> None:
    env = {"STASIS_DND_ARI_CA_BUNDLE": f" {ca_file} "}
    assert load_settings(None, env, require_secrets=False).ari.ca_bundle == ca_file
    assert load_settings(None, {}, require_secrets=False).ari.ca_bundle == ""


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (None, "does not exist"),
        ("", "holds no PEM certificate"),
        ("-----BEGIN PRIVATE KEY-----\nnot a certificate\n", "holds no PEM certificate"),
    ],
)
def test_config_refuses_an_unusable_ca_file(
    tmp_path: Path, content: str | None, error: str
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_text(content)
    config = tmp_path / "stasis-dnd.ini"
    config.write_text(f"[ari]\nca_bundle = {path}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {}, require_secrets=False)
    assert str(caught.value) == f"{config}: [ari] ca_bundle: CA file {path} {error}"


def test_config_refuses_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot be read: Is a directory$"):
        load_settings(None, {"STASIS_DND_ARI_CA_BUNDLE": str(tmp_path)}, require_secrets=False)
