"""The traffic helper behind every "no failed request" test counts calls that raise as
failures (failure injection: a server that resets every connection)."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.support import Traffic


@pytest.fixture
def resetting_server():
    """Accepts each connection and closes it at once: every call raises in the client."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=10)
        listener.close()


def test_calls_that_raise_are_recorded_as_failures(resetting_server):
    with Traffic(resetting_server, limit_seconds=60) as during:
        deadline = time.monotonic() + 30
        while len(during.seen) < 3:
            assert time.monotonic() < deadline, "no call finished"
            time.sleep(0.01)
    statuses = {status for status, _ in during.seen}
    assert statuses == {0}, during.seen
    assert {name for _, name in during.seen} <= {"ConnectionError", "ChunkedEncodingError"}


def test_too_few_calls_fail_the_block(resetting_server):
    with pytest.raises(AssertionError, match="at least 10000 expected"):
        with Traffic(resetting_server, limit_seconds=60, min_calls=10_000):
            pass
