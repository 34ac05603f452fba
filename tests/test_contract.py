"""The error contract (gateway/contract.py) covers every route, feeds the OpenAPI
document and is what docs/gateway.md shows."""
from pathlib import Path

from fastapi.routing import APIRoute

from mlplatform.gateway import contract
from mlplatform.gateway.app import create_app
from mlplatform.gateway.settings import GatewaySettings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "gateway.md"


def documented(public_predict: bool = True):
    app = create_app(GatewaySettings(public_predict=public_predict))
    return app, contract.apply(app.openapi(), predict_closed=not public_predict)


def test_every_route_has_an_entry_and_every_entry_a_route():
    app, _ = documented()
    routes = {(method, route.path) for route in app.routes if isinstance(route, APIRoute)
              and route.include_in_schema for method in route.methods}
    assert routes == {(entry.method, entry.path) for entry in contract.ROUTES}


def test_the_openapi_lists_the_contract_and_no_422():
    _, schema = documented()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for entry in contract.ROUTES:
        responses = schema["paths"][entry.path][entry.method.lower()]["responses"]
        listed = [o for o in contract.all_outcomes(entry) if not o.only_if]
        expected = {str(entry.success)} | {str(o.status) for o in listed}
        assert set(responses) == expected, entry.path
    forward = schema["paths"]["/forward"]["post"]["responses"]
    assert forward["403"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert forward["403"]["description"].startswith(contract.MESSAGES[403])


def test_closed_predict_routes_document_401():
    _, schema = documented(public_predict=False)
    assert "401" in schema["paths"]["/forward"]["post"]["responses"]
    assert "401" in schema["paths"]["/models"]["get"]["responses"]
    assert "401" not in schema["paths"]["/health"]["get"]["responses"]
    forward = schema["paths"]["/forward"]["post"]["responses"]["403"]["description"]
    assert forward.startswith("forbidden: ") and "; or модель не смогла" in forward


def test_a_submitted_job_links_to_its_status_and_result():
    _, schema = documented()
    links = schema["paths"]["/jobs"]["post"]["responses"]["202"]["links"]
    for link in links.values():
        path = link["operationRef"].split("/paths/")[1].rsplit("/", 1)[0]
        assert path.replace("~1", "/") in schema["paths"]


def test_the_docs_show_the_generated_table():
    text = DOCS.read_text(encoding="utf-8")
    assert contract.markdown() in text, (
        "docs/gateway.md is out of date: python -m mlplatform.gateway.contract docs/gateway.md")
