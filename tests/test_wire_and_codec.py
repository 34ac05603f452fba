"""The wire format and the codec, with MLServer's real request types (no server needed)."""
from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from mlserver.codecs import NumpyCodec
from mlserver.errors import MLServerError
from mlserver.types import InferenceRequest

from mlplatform.pyfunc_models.echo import EchoModel
from mlplatform.pyfunc_models.errors import ModelInputError
from mlplatform.pyfunc_models.wire import (
    WireFormatError,
    decode_json_response,
    decode_json_tensor,
    json_request,
    to_json,
)


def v2_request(body: dict) -> InferenceRequest:
    return InferenceRequest.model_validate(body)


def test_json_request_is_the_guides_format():
    assert json_request({"a": 10}, "work_model1") == {
        "inputs": [{"name": "work_model1", "shape": [9], "datatype": "BYTES", "data": '{"a": 10}'}]
    }


def test_to_json_converts_numpy_values():
    assert json.loads(to_json({"n": np.int64(3), "x": np.float64(0.5), "v": np.arange(2)})) == {
        "n": 3, "x": 0.5, "v": [0, 1]}
    with pytest.raises(TypeError):
        to_json({"bad": object()})


@pytest.mark.parametrize("data, expected", [
    ('{"a": 1}', [{"a": 1}]),
    (['{"a": 1}'], [{"a": 1}]),
    ([['{"a": 1}'], ['[1, 2]']], [{"a": 1}, [1, 2]]),
    ([b'{"a": 1}'], [{"a": 1}]),
])
def test_decode_json_tensor_accepts_every_nesting(data, expected):
    assert decode_json_tensor("x", "BYTES", data) == expected


@pytest.mark.parametrize("datatype, data, message", [
    ("FP32", [1.0], "expected BYTES"),
    ("BYTES", [], "empty"),
    ("BYTES", ["{oops"], "element 0 is not valid JSON"),
    ("BYTES", [3], "element 0 is int"),
    ("BYTES", [b"\xff"], "not UTF-8"),
    ("BYTES", {"a": 1}, "JSON string or a list"),
])
def test_decode_json_tensor_names_the_problem(datatype, data, message):
    with pytest.raises(WireFormatError, match=message):
        decode_json_tensor("x", datatype, data)


def test_decode_json_response_single_and_batch():
    one = {"outputs": [{"name": "output", "datatype": "BYTES", "shape": [1], "data": ['{"r": 1}']}]}
    two = {"outputs": [{"name": "output", "datatype": "BYTES", "shape": [2, 1],
                        "data": ['{"r": 1}', '{"r": 2}']}]}
    assert decode_json_response(one) == {"r": 1}
    assert decode_json_response(two) == [{"r": 1}, {"r": 2}]
    with pytest.raises(WireFormatError, match="no outputs"):
        decode_json_response({"outputs": []})


def test_codec_decodes_the_guides_request_and_answers_shape_1():
    model = EchoModel()
    request = v2_request(json_request({"a": 10}, "echo"))
    answer = model.predict(None, request)
    encoded = NumpyCodec.encode_output("output", answer["output"])
    assert encoded.shape == [1] and encoded.datatype == "BYTES"
    assert json.loads(encoded.data.root[0]) == {"result": 20}


def test_codec_keeps_one_row_per_document_for_batches():
    request = v2_request({"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES",
                                      "data": ['{"a": 1}', '{"a": 2}']}]})
    output = EchoModel().predict(None, request)["output"]
    assert [json.loads(row) for row in output] == [{"result": 2}, {"result": 4}]


def test_codec_errors_are_mlserver_400s():
    request = v2_request({"inputs": [
        {"name": "x", "shape": [1], "datatype": "BYTES", "data": ['{"a": 1}']},
        {"name": "y", "shape": [1], "datatype": "BYTES", "data": ['{"a": 1}']},
    ]})
    with pytest.raises(ModelInputError, match="exactly one BYTES input") as raised:
        EchoModel().predict(None, request)
    assert isinstance(raised.value, MLServerError) and raised.value.status_code == 400
    assert isinstance(raised.value, ValueError)


def test_notebook_path_takes_plain_numpy_and_dataframe_input():
    model = EchoModel()
    assert model.predict(None, {"a": 10}) == {"result": 20}
    assert model.predict(None, {"a": np.array(10)}) == {"result": 20}  # MLflow's scoring server
    batch = model.predict(None, pd.DataFrame([{"a": 1}, {"a": 2}]))  # a DataFrame is a batch
    assert [json.loads(text) for text in batch["output"]] == [{"result": 2}, {"result": 4}]


def test_client_imports_neither_mlserver_nor_mlflow():
    import subprocess

    code = ("import sys, client; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('mlserver', 'mlflow', 'numpy')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
