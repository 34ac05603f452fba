"""Fixtures that run the real components on free ports (helpers: ``tests/support.py``).

* ``s3_server``: a real ``minio`` when the binary is on PATH; otherwise moto's
  standalone S3 server (``moto_server``), a *test stand-in* that speaks the S3
  API on a real port, so the same boto3 and MLflow code paths run.
* ``stack``: the real ``mlplatform up`` (MLflow tracking server with S3
  artifacts + ``mlserver start`` + the gateway), stopped with ``mlplatform down``.
* ``served``: the stack with the catalog's models registered and deployed.
* ``postgres``: a throw-away PostgreSQL server (Debian's ``postgresql``), for the
  feature store and the job store on a real server database.

Tiers: a test that uses any of these fixtures is marked ``stack`` (and the web
page tests ``browser``); every other test is ``unit`` (``make test-fast``).
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from mlplatform.scripts.processes import free_port
from tests.support import (
    BIN,
    S3_KEY,
    S3_SECRET,
    SERVED_MODELS,
    S3Server,
    Postgres,
    Stack,
    assert_all_gone,
    recorded_pids,
    stack_environment,
    stop,
    wait_for_http,
)

STACK_FIXTURES = {"s3_server", "stack", "served", "postgres", "platform_images", "compose_stack"}
CONTAINER_FIXTURES = {"platform_images", "compose_stack"}


def pytest_collection_modifyitems(config, items):
    """Tiers follow from what a test uses, so no marker can be forgotten.  The container
    tests go last: `.ci/run` builds their images in the background meanwhile."""
    items.sort(key=lambda item: bool(set(getattr(item, "fixturenames", ())) & CONTAINER_FIXTURES))
    for item in items:
        if item.get_closest_marker("browser") or item.get_closest_marker("stack"):
            continue
        uses = set(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.stack if uses & STACK_FIXTURES else pytest.mark.unit)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    minio = shutil.which("minio")
    if minio:
        data = tmp_path_factory.mktemp("minio-data")
        env = {**os.environ, "MINIO_ROOT_USER": S3_KEY, "MINIO_ROOT_PASSWORD": S3_SECRET}
        command = [minio, "server", str(data), "--address", f"127.0.0.1:{port}",
                   "--console-address", f"127.0.0.1:{free_port()}"]
        kind = "minio"
    else:
        env = dict(os.environ)
        command = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
        kind = "moto_server (test stand-in)"
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_for_http(endpoint)
        yield S3Server(endpoint, kind)
    finally:
        stop(process)


@pytest.fixture(scope="session")
def postgres():
    server = Postgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stack(s3_server, tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("stack")
    running = Stack(state_dir, stack_environment(state_dir, s3_server), s3_server)
    try:
        running.cli("up")
        running.pids = recorded_pids(state_dir)
        yield running
    finally:
        running.cli("down", check=False)
        if running.pids:
            assert_all_gone(running.pids)


@pytest.fixture(scope="session")
def served(stack):
    """The catalog's models registered (champion) and loaded into MLServer."""
    for model in SERVED_MODELS:
        stack.cli("register", model)
    stack.cli("deploy")
    return stack


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it "
                    "(scripts/ensure_package.sh)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()
