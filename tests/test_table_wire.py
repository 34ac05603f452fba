"""The table wire format (pyfunc_models.table) with MLServer's real request types and
its real gRPC converters (no server needed)."""
from __future__ import annotations

import math

import numpy as np
import orjson
import pandas as pd
import pytest
from mlserver.grpc import dataplane_pb2 as pb
from mlserver.grpc.converters import ModelInferRequestConverter
from mlserver.types import InferenceRequest

from mlplatform.gateway.grpc_upstream import table_message
from mlplatform.gateway.table import table_request
from mlplatform.pyfunc_models.table import (
    CATEGORIES,
    PACKED,
    TableError,
    decode_columns,
    encode_frame,
    from_raw,
    to_raw,
)

FRAME = pd.DataFrame({
    "amount": [12.5, None, 3.0],
    "hour": [1, 2, 3],
    "is_online": [True, False, True],
    "country": ["DE", None, "Zürich"],
})


def _expected_columns():
    return {"amount": [12.5, math.nan, 3.0], "hour": [1.0, 2.0, 3.0],
            "is_online": [1.0, 0.0, 1.0], "country": ["DE", None, "Zürich"]}


def _same(decoded, expected):
    assert list(decoded) == list(expected)
    for name, values in expected.items():
        got = decoded[name].tolist()
        assert len(got) == len(values)
        for g, e in zip(got, values):
            assert (isinstance(e, float) and math.isnan(e) and math.isnan(g)) or g == e, name


def test_text_is_dictionary_encoded_and_numbers_stay_numbers():
    columns = {c.name: c for c in encode_frame(FRAME)}
    assert columns["country"].datatype == "INT32"
    assert columns["country"].values.tolist() == [0, -1, 1]
    assert columns["country"].categories == ["DE", "Zürich"]
    assert {columns[n].datatype for n in ("amount", "hour", "is_online")} == {"FP64"}


def test_json_round_trip_through_mlserver_types():
    body = orjson.loads(orjson.dumps(table_request(encode_frame(FRAME))))
    assert body["inputs"][0]["data"][1] is None  # NaN travels as null
    _same(decode_columns(InferenceRequest.model_validate(body).inputs), _expected_columns())


def test_grpc_raw_round_trip_through_mlservers_converter():
    request = pb.ModelInferRequest(model_name="m")
    for column in encode_frame(FRAME):
        tensor = request.inputs.add(name=column.name, datatype=column.datatype,
                                    shape=[len(column.values)])
        for key, value in column.parameters().items():
            tensor.parameters[key].string_param = value
        request.raw_input_contents.append(column.raw())
    decoded = decode_columns(ModelInferRequestConverter.to_types(request).inputs)
    _same(decoded, _expected_columns())


def test_grpc_packed_round_trip_through_mlservers_converter():
    """What the gateway sends: each column one BYTES element holding its buffer."""
    request = table_message("m", encode_frame(FRAME))
    assert {tensor.datatype for tensor in request.inputs} == {"BYTES"}
    assert {tuple(tensor.shape) for tensor in request.inputs} == {(1,)}
    wire = pb.ModelInferRequest.FromString(request.SerializeToString())
    decoded = decode_columns(ModelInferRequestConverter.to_types(wire).inputs)
    _same(decoded, _expected_columns())
    decoded["amount"][0] = 1.0  # a model may change its columns in place


@pytest.mark.parametrize("data, packed, message", [
    (["AAAAAAAA8D8="], "FP64", "one raw BYTES element"),  # over REST: text, not bytes
    ([b"\x00" * 12], "FP64", "12 bytes are not whole FP64 values"),
    ([b"\x00" * 8, b"\x00" * 8], "FP64", "one raw BYTES element"),
    ([b"\x00" * 8], "TEXT", "must be a fixed-width V2 datatype"),
])
def test_bad_packed_columns_name_the_column(data, packed, message):
    tensor = InferenceRequest.model_validate({"inputs": [
        {"name": "amount", "datatype": "BYTES", "shape": [1], "data": ["x"],
         "parameters": {PACKED: packed}}]}).inputs[0]
    tensor.data.root = data  # as MLServer's gRPC converter leaves it
    with pytest.raises(TableError, match=message) as raised:
        decode_columns([tensor])
    assert "column 'amount'" in str(raised.value)


def test_plain_bytes_text_columns_are_accepted():
    body = {"inputs": [{"name": "country", "datatype": "BYTES", "shape": [2], "data": ["DE", "FR"]}]}
    assert decode_columns(InferenceRequest.model_validate(body).inputs)["country"].tolist() == \
        ["DE", "FR"]


@pytest.mark.parametrize("tensor, message", [
    ({"name": "c", "datatype": "INT32", "shape": [2], "data": [0, 5],
      "parameters": {CATEGORIES: '["a"]'}}, "codes must be between -1 and 0"),
    ({"name": "c", "datatype": "INT32", "shape": [1], "data": [0],
      "parameters": {CATEGORIES: "not json"}}, "is not a JSON list"),
    ({"name": "x", "datatype": "BYTES", "shape": [1], "data": ["seven"]}, None),
])
def test_bad_tables_name_the_column(tensor, message):
    request = InferenceRequest.model_validate({"inputs": [tensor]})
    if message is None:  # text where the model wants numbers is the model's check, not ours
        assert decode_columns(request.inputs)["x"].tolist() == ["seven"]
        return
    with pytest.raises(TableError, match=message) as raised:
        decode_columns(request.inputs)
    assert f"column {tensor['name']!r}" in str(raised.value)


def test_columns_of_different_lengths_are_refused():
    body = {"inputs": [{"name": "a", "datatype": "FP64", "shape": [2], "data": [1, 2]},
                       {"name": "b", "datatype": "FP64", "shape": [1], "data": [1]}]}
    with pytest.raises(TableError, match="differ in length"):
        decode_columns(InferenceRequest.model_validate(body).inputs)


@pytest.mark.parametrize("datatype, values", [
    ("FP64", [1.5, -2.0, math.inf]), ("FP32", [0.5, 2.0]), ("INT64", [-(2 ** 40), 7]),
    ("INT32", [-1, 3]), ("BOOL", [True, False]), ("UINT8", [0, 255]),
    ("BYTES", [b"abc", b"", "zürich".encode()]),
])
def test_raw_contents_round_trip(datatype, values):
    assert from_raw(to_raw(values, datatype), datatype).tolist() == values


def test_raw_contents_are_little_endian_as_v2_specifies():
    assert to_raw([1], "INT32") == b"\x01\x00\x00\x00"
    assert to_raw([b"ab"], "BYTES") == b"\x02\x00\x00\x00ab"
    assert np.frombuffer(to_raw([2.0], "FP64"), "<f8")[0] == 2.0


def test_a_table_goes_in_parts_joined_back_in_row_order():
    import asyncio

    from mlplatform.gateway.table import infer_in_parts

    sent = []

    async def infer_table(model, columns, version):
        sent.append((len(columns[0].values), columns[1].categories))
        decoded = decode_columns(InferenceRequest.model_validate(
            orjson.loads(orjson.dumps(table_request(columns)))).inputs)
        return {"hour": decoded["hour"].tolist(), "country": decoded["country"].tolist()}

    countries = ["DE"] * 4 + [None, "FR", "FR", "IT", "DE", "FR"]
    frame = pd.DataFrame({"hour": range(10), "country": countries})
    # 8 bytes of hour + 4 of code a row, plus the three strings once: 13 bytes a row
    answer = asyncio.run(infer_in_parts(infer_table, "m", encode_frame(frame), None,
                                        max_request_bytes=3 * 13))
    assert [rows for rows, _ in sent] == [3, 3, 3, 1]
    assert [categories for _, categories in sent] == [["DE"], ["DE", "FR"], ["DE", "FR", "IT"],
                                                      ["FR"]]
    assert answer["hour"].tolist() == list(range(10))
    assert answer["country"].tolist() == countries
