"""AriRest.filter_events: the one request with a JSON body, sent on a
connection of its own, over http and https, with the same errors as any."""

from __future__ import annotations

import json

import pytest
from pytest_httpserver import HTTPServer
from test_ari_tls import PASSWORD, ca, ca_file, https_server, server_context, settings_for
from werkzeug import Request, Response

from stasis_dnd.ari.rest import AriCertificateError, AriError, AriRest

__all__ = ["ca", "ca_file"]  # the certificate fixtures, shared with test_ari_tls

PATH = "/ari/applications/my app/eventFilter"  # as the server decodes it


def answer_filter(request: Request) -> Response:
    body = json.loads(request.get_data())
    assert request.headers["Content-Type"] == "application/json"
    assert request.authorization is not None
    assert (request.authorization.username, request.authorization.password) == ("dnd", PASSWORD)
    allowed = body["allowed"]
    return Response(json.dumps({"name": "my app", "events_allowed": allowed}), 200)


def test_the_filter_travels_as_a_json_body(httpserver: HTTPServer) -> None:
    httpserver.expect_request(PATH, method="PUT").respond_with_handler(answer_filter)
    with AriRest(settings_for(httpserver.url_for("").rstrip("/"))) as client:
        client.filter_events("my app", {"StasisStart", "ApplicationReplaced"})
    (request, _), *_ = httpserver.log
    assert json.loads(request.get_data()) == {
        "allowed": [{"type": "ApplicationReplaced"}, {"type": "StasisStart"}]
    }


@pytest.mark.parametrize("status", [400, 404, 405])
def test_an_asterisk_that_refuses_it_is_an_ari_error_with_the_status(
    httpserver: HTTPServer, status: int
) -> None:
    httpserver.expect_request(PATH, method="PUT").respond_with_json(
        {"message": "Resource not found"}, status=status
    )
    with (
        AriRest(settings_for(httpserver.url_for("").rstrip("/"))) as client,
        pytest.raises(AriError) as caught,
    ):
        client.filter_events("my app", {"StasisStart"})
    assert caught.value.status == status
    assert f"PUT /applications/my%20app/eventFilter with {status}" in str(caught.value)


def test_over_https_it_is_verified_like_every_request(ca: object, ca_file: str) -> None:
    with https_server(server_context(ca)) as server:  # type: ignore[arg-type]
        server.expect_request(PATH, method="PUT").respond_with_handler(answer_filter)
        url = server.url_for("").rstrip("/")
        with AriRest(settings_for(url, ca_bundle=ca_file)) as client:
            client.filter_events("my app", {"StasisStart"})
        with AriRest(settings_for(url)) as untrusting, pytest.raises(AriCertificateError):
            untrusting.filter_events("my app", {"StasisStart"})
