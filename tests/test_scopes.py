"""Scoped tokens: the whole route x scope matrix, generated from the route contract
(gateway/contract.py), on a real gateway process with closed predict routes."""
from __future__ import annotations

import sqlite3

import pytest
import requests

from mlplatform.gateway import contract
from mlplatform.gateway.scopes import ADMIN, LIFECYCLE, SCOPES, Grant, ScopeError, parse, stored
from mlplatform.gateway.store import Store
from tests.support import stack_environment, start_gateway, stop

# Arguments that reach each route's own checks without changing anything: unknown ids and
# models (a 400/404 of the route itself, never a switch, a training or a write).
MODEL = "nosuch"
PATH_VALUES = {"job_id": "nosuch", "training_id": "987654", "name": MODEL}
QUERY = {"/add_data": {"model": MODEL}, "/retrain": {"model": MODEL},
         "/rollback": {"model": MODEL}, "/forward": {"model": MODEL}}
TOKENS = sorted(SCOPES) + [f"{LIFECYCLE}:{MODEL}", f"{LIFECYCLE}:fraud"]


def scoped_routes():
    return [entry for entry in contract.ROUTES if entry.scope]


def call(url: str, entry: contract.Route, token: str = "") -> requests.Response:
    path = entry.path.format(**{key: PATH_VALUES[key] for key in PATH_VALUES
                                if "{" + key + "}" in entry.path})
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"json": {}} if entry.method in ("POST", "PUT") and "jobs" not in entry.path else {}
    return requests.request(entry.method, url + path,
                            params=QUERY.get(entry.path), headers=headers, timeout=60, **body)


def model_of(entry: contract.Route):
    """The model a lifecycle route names before it looks anything up (None: a training id)."""
    return MODEL if entry.path in ("/add_data", "/retrain", "/rollback",
                                   "/models/{name}/versions") else None


@pytest.fixture(scope="module")
def closed_gateway(served, tmp_path_factory):
    """A gateway of its own with closed predict routes, its tokens in its own database:
    one per scope (made by the CLI), and one made before scopes existed."""
    folder = tmp_path_factory.mktemp("scoped")
    database = folder / "gateway.db"
    with sqlite3.connect(database) as old:  # the token table as the gateway made it before
        old.execute("CREATE TABLE tokens (id VARCHAR(16) PRIMARY KEY, \"group\" VARCHAR(200), "
                    "digest VARCHAR(64) UNIQUE, created_at DATETIME, revoked BOOLEAN)")
        old.execute("INSERT INTO tokens VALUES ('legacy000001', 'old', ?, "
                    "'2026-01-01 00:00:00', 0)", (_digest("mlp_legacy-token"),))
    env = stack_environment(folder)
    tokens = {}
    for scope in TOKENS:
        made = served.cli("token", "create", "--group", "matrix", "--scope", scope, env=env)
        tokens[scope] = made.stdout.strip().splitlines()[-1]
    process, url = start_gateway(folder, served.mlserver_url, timeout=20,
                                 tracking_uri=served.mlflow_url, public_predict="false",
                                 database_url=f"sqlite:///{database}")
    try:
        yield url, tokens, env
    finally:
        stop(process)


def _digest(token: str) -> str:
    from mlplatform.gateway.store import digest

    return digest(token)


def test_every_scoped_route_refuses_a_call_without_a_token(closed_gateway):
    url, _, _ = closed_gateway
    for entry in scoped_routes():
        response = call(url, entry)
        assert response.status_code == 401, (entry.method, entry.path, response.text)
        assert response.json()["message"] == "unauthorized"


@pytest.mark.parametrize("scope", TOKENS)
def test_the_route_scope_matrix(closed_gateway, scope):
    """Each token on every route: allowed where the contract's scope says (the route's own
    answer, whatever it is, but never 401 or 403 forbidden), else 403 naming the scope."""
    url, tokens, _ = closed_gateway
    grant = Grant.of("t", "matrix", scope)
    checked = 0
    for entry in scoped_routes():
        response = call(url, entry, tokens[scope])
        body = response.json() if "json" in response.headers.get("content-type", "") else {}
        forbidden = response.status_code == 403 and body.get("message") == "forbidden"
        where = (scope, entry.method, entry.path, response.status_code, response.text[:300])
        if grant.allows(entry.scope, model_of(entry)):
            assert response.status_code != 401 and not forbidden, where
        else:
            assert forbidden, where
            assert body["scope"] == grant.missing(entry.scope, model_of(entry)), where
            assert repr(body["scope"]) in body["detail"], where
        checked += 1
    assert checked == len(scoped_routes()) >= 20


def test_a_token_made_before_scopes_works_as_admin_and_is_flagged(served, closed_gateway):
    url, _, env = closed_gateway
    for entry in scoped_routes():
        response = call(url, entry, "mlp_legacy-token")
        assert response.status_code != 401 and not (
            response.status_code == 403 and response.json().get("message") == "forbidden"), \
            (entry.path, response.text)
    listed = served.cli("token", "list", env=env).stdout
    legacy = next(line for line in listed.splitlines() if line.startswith("legacy000001"))
    assert "admin (made before scopes: replace it)" in legacy
    assert any(line.endswith(" predict") for line in listed.splitlines())


def test_a_model_scope_covers_that_model_only(served, closed_gateway):
    url, tokens, _ = closed_gateway
    versions = requests.get(url + "/models/fraud/versions", timeout=30,
                            headers={"Authorization": f"Bearer {tokens['lifecycle:fraud']}"})
    assert versions.status_code == 200 and versions.json()
    other = requests.get(url + "/models/echo/versions", timeout=30,
                         headers={"Authorization": f"Bearer {tokens['lifecycle:fraud']}"})
    assert other.status_code == 403 and other.json()["scope"] == "lifecycle:echo"


def test_the_cli_refuses_an_unknown_scope_or_none(served, tmp_path):
    env = stack_environment(tmp_path)
    for scopes in (["--scope", "deploy"], []):
        result = served.cli("token", "create", "--group", "g", *scopes, env=env, check=False)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "predict, jobs, lifecycle, predictions:read, admin" in result.stderr


def test_openapi_names_each_routes_scope(closed_gateway):
    url, _, _ = closed_gateway
    document = requests.get(url + "/openapi.json", timeout=30).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for entry in scoped_routes():
        operation = document["paths"][entry.path][entry.method.lower()]
        assert operation["x-scope"] == entry.scope, entry.path
        assert operation["security"] == [{"bearer": []}]
        assert "forbidden" in operation["responses"]["403"]["description"]


def test_scopes_are_parsed_strictly():
    assert parse(" lifecycle:fraud ") == "lifecycle:fraud"
    for bad in ("lifecycle:", "lifecycle:a b", "Admin", "predict:write", ""):
        with pytest.raises(ScopeError):
            parse(bad)
    assert stored(["predict", "admin", "predict"]) == "admin predict"
    with pytest.raises(ScopeError, match="at least one scope"):
        stored([])
    assert Grant.of("t", "g", None).scopes == {ADMIN}


def test_tokens_keep_their_scopes_in_the_store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'g.db'}")
    token_id, secret = store.create_token("team", ["jobs", "lifecycle:fraud"])
    grant = store.grant_of(secret)
    assert (grant.token_id, grant.group, grant.legacy) == (token_id, "team", False)
    assert grant.allows("lifecycle", "fraud") and not grant.allows("lifecycle", "echo")
    assert grant.allows("jobs") and not grant.allows("predict")
    store.revoke(token_id)
    assert store.grant_of(secret) is None


@pytest.mark.browser
def test_the_web_page_asks_a_closed_gateway_for_a_token(closed_gateway, browser):
    """Closed predict routes (compose's default): the page says the gateway wants a token;
    with a predict token every tab's calls carry it."""
    url, tokens, _ = closed_gateway
    page = browser.new_page()
    try:
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('token-status').textContent"
                               ".startsWith('the gateway answered 401')")
        page.fill("#token", tokens["predict"])
        page.press("#token", "Tab")  # read when the field is left
        page.wait_for_selector("#model option[value=echo]", state="attached")
        assert page.text_content("#token-status") == ""
        page.select_option("#model", "echo")
        page.fill("#payload", '{"a": 21}')
        page.click("#send")
        page.wait_for_function("document.getElementById('status').textContent === 'HTTP 200'")
        assert '"result": 42' in page.text_content("#answer")
    finally:
        page.close()
