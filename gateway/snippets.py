"""Working example requests for each gateway route (``mlplatform snippet``), like
Neomaril's ``generate_predict_code``: curl, Python (requests) or JavaScript (fetch).

Each route has one example: JSON routes send their example body; upload routes
send a file the snippet writes itself first, so every snippet runs as printed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Optional

from mlplatform.pyfunc_models.fraud.features import EXAMPLE_TRANSACTION

LANGUAGES = ("curl", "python", "javascript")


@dataclass(frozen=True)
class Example:
    method: str
    path: str
    body: Optional[Any] = None         # JSON body
    csv: Optional[str] = None          # a CSV file uploaded as field "file"
    model: Optional[str] = None


def _csv(rows, label: Optional[str] = None) -> str:
    header = list(EXAMPLE_TRANSACTION) + ([label] if label else [])
    lines = [",".join(header)]
    for row in rows:
        values = [str(row[k]).lower() if isinstance(row[k], bool) else str(row[k]) for k in header]
        lines.append(",".join(values))
    return "\n".join(lines) + "\n"


LEGIT = {**EXAMPLE_TRANSACTION, "amount": 23.5, "hour": 13, "merchant_category": "grocery",
         "country": "US", "is_online": False, "distance_from_home_km": 3.0,
         "transactions_last_24h": 1}

EXAMPLES: Dict[str, Example] = {
    "/forward": Example("POST", "/forward", body={"a": 10}),
    "/forward_batch": Example("POST", "/forward_batch", csv=_csv([EXAMPLE_TRANSACTION, LEGIT])),
    "/evaluate": Example("POST", "/evaluate", csv=_csv(
        [{**EXAMPLE_TRANSACTION, "label": 1}, {**LEGIT, "label": 0}], "label")),
    "/predict": Example("POST", "/predict", body=EXAMPLE_TRANSACTION),
    "/predict_scenario": Example("POST", "/predict_scenario", body=EXAMPLE_TRANSACTION),
    "/metadata": Example("GET", "/metadata"),
    "/health": Example("GET", "/health"),
    "/ready": Example("GET", "/ready"),
}


def snippet(route: str, language: str, base_url: str, model: Optional[str] = None) -> str:
    route = route if route.startswith("/") else "/" + route
    if route not in EXAMPLES:
        raise KeyError(f"no example for {route!r}; routes: {', '.join(EXAMPLES)}")
    if language not in LANGUAGES:
        raise KeyError(f"unknown language {language!r}; choose {', '.join(LANGUAGES)}")
    example = EXAMPLES[route]
    url = base_url.rstrip("/") + route + (f"?model={model}" if model else "")
    return {"curl": _curl, "python": _python, "javascript": _javascript}[language](example, url)


def _curl(example: Example, url: str) -> str:
    if example.csv is not None:
        return (f"cat > transactions.csv <<'EOF'\n{example.csv}EOF\n"
                f"curl -s -X POST '{url}' -F 'file=@transactions.csv'")
    if example.body is not None:
        return (f"curl -s -X POST '{url}' -H 'Content-Type: application/json' \\\n"
                f"     -d '{json.dumps(example.body)}'")
    return f"curl -s '{url}'"


def _python(example: Example, url: str) -> str:
    if example.csv is not None:
        return ("import requests\n\n"
                f"csv = {example.csv!r}\n"
                f"response = requests.post({url!r}, files={{'file': ('transactions.csv', csv)}})\n"
                "print(response.status_code, response.json())")
    if example.body is not None:
        return ("import requests\n\n"
                f"response = requests.post({url!r}, json={example.body!r})\n"
                "print(response.status_code, response.json())")
    return f"import requests\n\nprint(requests.get({url!r}).json())"


def _javascript(example: Example, url: str) -> str:
    if example.csv is not None:
        return (f"const form = new FormData();\n"
                f"form.append('file', new Blob([{json.dumps(example.csv)}], {{type: 'text/csv'}}),"
                " 'transactions.csv');\n"
                f"const response = await fetch('{url}', {{method: 'POST', body: form}});\n"
                "console.log(response.status, await response.json());")
    if example.body is not None:
        return (f"const response = await fetch('{url}', {{\n"
                "  method: 'POST',\n  headers: {'Content-Type': 'application/json'},\n"
                f"  body: JSON.stringify({json.dumps(example.body)}),\n}});\n"
                "console.log(response.status, await response.json());")
    return f"console.log(await (await fetch('{url}')).json());"
