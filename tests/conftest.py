import socket

import pytest

from openood_moon.data.embedded import build_embedded


def _no_network(*args, **kwargs):
    raise OSError("network access during an offline build")


@pytest.fixture(scope="session")
def mnist6_root(tmp_path_factory):
    """The embedded benchmark, built once per session with every socket connection refused."""
    root = tmp_path_factory.mktemp("offline") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket.socket, "connect_ex", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        build_embedded(root)
    return root
