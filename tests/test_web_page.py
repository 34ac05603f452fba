"""The gateway's web page in real headless Chromium: upload an image, see the quantised image."""
from __future__ import annotations

import base64
import io

import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

pytestmark = pytest.mark.browser


def test_upload_an_image_and_see_the_quantised_image(served, browser, tmp_path):
    photo = tmp_path / "photo.jpg"
    Image.fromarray(load_sample_image("china.jpg")[100:220, 200:360]).save(photo, "JPEG")
    page = browser.new_page()
    page.goto(served.gateway_url + "/")
    page.wait_for_selector("#model option[value=image_quantize]", state="attached")
    page.select_option("#model", "image_quantize")
    assert page.is_visible("#image") and not page.is_visible("#payload")
    page.set_input_files("#image", str(photo))
    page.click("#send")
    page.wait_for_selector("#result-image:not([hidden])", timeout=30_000)
    assert page.text_content("#status") == "HTTP 200"
    source = page.get_attribute("#result-image", "src")
    assert source.startswith("data:image/png;base64,")
    shown = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
    assert shown.size == (160, 120)
    assert page.evaluate("document.getElementById('result-image').naturalWidth") == 160
    page.screenshot(path=str(tmp_path / "page.png"))
    page.close()


def test_send_json_and_see_the_answer_and_errors(served, browser):
    page = browser.new_page()
    page.goto(served.gateway_url + "/")
    page.wait_for_selector("#model option[value=echo]", state="attached")
    page.select_option("#model", "echo")
    page.fill("#payload", '{"a": 21}')
    page.click("#send")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('HTTP')")
    assert '"result": 42' in page.text_content("#answer")
    page.fill("#payload", '{"b": 1}')
    page.click("#send")
    page.wait_for_function("document.getElementById('status').textContent === 'HTTP 403'")
    assert "модель не смогла обработать данные" in page.text_content("#answer")
    page.close()


def test_api_docs_render_offline_from_the_gateways_own_assets(served, browser):
    """Swagger UI at /docs with every request kept on the gateway: a page that needed a
    CDN would stay blank here (and on any machine without internet)."""
    page = browser.new_page()
    elsewhere = []

    def only_the_gateway(route):
        if route.request.url.startswith(served.gateway_url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_gateway)
    page.goto(served.gateway_url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = {element.get_attribute("data-path") for element in page.query_selector_all(
        ".opblock-summary-path")}
    assert {"/forward", "/forward_batch", "/evaluate", "/predict", "/jobs"} <= paths
    assert elsewhere == []
    page.close()
