"""TLS end to end: a server with a certificate, real workers, the SDK trusting that certificate."""

from __future__ import annotations

import shutil
import subprocess
import sys

import grpc
import numpy as np
import pytest
from svc_helpers import served

import edgegrad
from edgegrad.errors import Unavailable
from edgegrad.server.cluster import Cluster
from edgegrad.v1 import service_pb2, service_pb2_grpc

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

NET = edgegrad.Network.from_dict({
    "inputs": ["a", "b"], "outputs": ["y"],
    "nodes": [{"id": "h", "activation": "tanh", "bias": 0.1}, {"id": "y", "activation": "sigmoid"}],
    "edges": [{"src": "a", "dst": "h", "weight": 0.4}, {"src": "b", "dst": "h", "weight": -1.3},
              {"src": "h", "dst": "y", "weight": 2.0}, {"src": "a", "dst": "y", "weight": 0.5}],
})


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for localhost/127.0.0.1 and its key (PEM files)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture(scope="module")
def tls_cluster(namespace, certificate):
    cert, key = certificate
    with Cluster(namespace("tls", tls_cert=cert, tls_key=key), workers=1, log=sys.stderr) as c:
        yield c


def test_results_over_tls_equal_the_in_process_call(tls_cluster, certificate) -> None:
    x = np.array([[0.3, -0.2], [1.5, 0.7]])
    t = np.array([[1.0], [0.0]])
    with edgegrad.Client(tls_cluster.address, root_certificates=certificate[0]) as client:
        got = client.gradients(NET, x, targets=t, loss="bce")
    assert got == served(NET, x, t, loss="bce", settings=tls_cluster.settings)


def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_cluster) -> None:
    with grpc.insecure_channel(tls_cluster.address) as channel:
        stub = service_pb2_grpc.EdgegradStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_that_does_not_trust_the_certificate_is_refused(tls_cluster) -> None:
    with edgegrad.Client(tls_cluster.address, tls=True, timeout=3) as client:
        with pytest.raises(Unavailable):
            client.capabilities()
