"""Service invocation with the official Dapr Python SDK (dapr==1.19.0, unmodified):
`DaprClient.invoke_method` from app A through two `outrigger run` processes to app B, a
plain Python HTTP server. Sidecar A is routed by an `--xds-file` that sends app id
`py-orders` to sidecar B's mesh port, as a control plane would.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

TARGET = f"py-orders-{uuid.uuid4().hex[:6]}"


class _EchoHandler(BaseHTTPRequestHandler):
    """Answers with what it received; `/fail` answers 418."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/fail"):
            self.send_response(418)
            self.send_header("content-type", "text/plain")
            self.end_headers()
            self.wfile.write(b"teapot")
            return
        reply = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "body": body.decode("utf-8", "replace"),
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-served-by", "py-orders")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def echo_app():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def callee(start_sidecar, echo_app):
    sc = start_sidecar(TARGET, extra_args=["--app-port", str(echo_app)])
    assert sc.mesh_port > 0, "the listening line reports mesh_port"
    return sc


@pytest.fixture(scope="module")
def caller(start_sidecar, callee, tmp_path_factory):
    xds = {
        "versionInfo": "1",
        "resources": [
            {
                "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                "name": "orders",
                "type": "STATIC",
                "connectTimeout": "1s",
                "loadAssignment": {
                    "clusterName": "orders",
                    "endpoints": [
                        {
                            "lbEndpoints": [
                                {
                                    "endpoint": {
                                        "address": {
                                            "socketAddress": {
                                                "address": "127.0.0.1",
                                                "portValue": callee.mesh_port,
                                            }
                                        }
                                    }
                                }
                            ]
                        }
                    ],
                },
            },
            {
                "@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                "name": "outrigger",
                "virtualHosts": [
                    {
                        "name": "orders",
                        "domains": [TARGET, f"{TARGET}.default.svc.cluster.local"],
                        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "orders"}}],
                    }
                ],
            },
        ],
    }
    path: Path = tmp_path_factory.mktemp("xds") / "xds.json"
    path.write_text(json.dumps(xds))
    return start_sidecar(f"py-caller-{uuid.uuid4().hex[:6]}", extra_args=["--xds-file", str(path)])


def test_invoke_method_reaches_the_other_app_with_body_and_query(caller, connect):
    client = connect(caller)
    response = client.invoke_method(
        TARGET,
        "orders/42",
        data=b'{"item":"book"}',
        content_type="application/json",
        http_verb="POST",
        http_querystring=(("full", "true"),),
    )
    echoed = json.loads(response.data)
    assert echoed["method"] == "POST"
    assert echoed["path"] == "/orders/42?full=true"
    assert echoed["body"] == '{"item":"book"}'
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["headers"]["dapr-caller-app-id"] == caller.app_id


def test_invoke_method_defaults_to_get(caller, connect):
    client = connect(caller)
    response = client.invoke_method(TARGET, "health")
    echoed = json.loads(response.data)
    assert echoed["method"] == "GET"
    assert echoed["path"] == "/health"


def test_app_error_status_reaches_the_caller(caller):
    url = f"http://127.0.0.1:{caller.http_port}/v1.0/invoke/{TARGET}/method/fail"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url, timeout=5)
    assert error.value.code == 418
    assert error.value.read() == b"teapot"


def test_unknown_app_id_is_err_direct_invoke(caller):
    url = f"http://127.0.0.1:{caller.http_port}/v1.0/invoke/nobody-here/method/x"
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url, timeout=5)
    assert error.value.code == 500
    body = json.loads(error.value.read())
    assert body["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "nobody-here" in body["message"]
