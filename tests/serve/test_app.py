"""The server's routes on a real server (uvicorn) with a tiny model: every answer equals
`unetzoo predict`'s file for the same image, every bad request gets a 4xx and one line of
JSON, the queue is bounded, an internal error is a 500 with one line, and the server keeps
serving through all of it."""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import tifffile
from PIL import Image

from unetzoo.data.transforms import Preprocessing

from .conftest import predict_files, serving, tiny_checkpoint

MAX_PIXELS = 80 * 80
MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def server(checkpoint: Path):
    limits = {"max_pixels": MAX_PIXELS, "max_body_bytes": MAX_BODY, "max_queue": 8,
              "max_batch": 1}  # one request at a time: no gatherer (the default gathers)
    with serving([str(checkpoint)], **limits) as (url, models), \
            httpx.Client(base_url=url, timeout=60) as client:
        yield client, models[0]


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def post_file(client: httpx.Client, name: str, data: bytes, model: str = "tiny",
              **params: str) -> httpx.Response:
    return client.post(f"/v1/models/{model}/predict", params=params,
                       files={"image": (name, data)})


def infer(client: httpx.Client, array: np.ndarray, datatype: str = "UINT8",
          model: str = "tiny", **extra) -> httpx.Response:
    tensor = {"name": "image", "shape": list(array.shape), "datatype": datatype,
              "data": array.ravel().tolist(), **extra}
    return client.post(f"/v2/models/{model}/infer", json={"inputs": [tensor]})


def labels_of(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    out = response.json()["outputs"][0]
    assert out["name"] == "labels" and out["datatype"] == "UINT8"
    return np.asarray(out["data"], np.uint8).reshape(out["shape"])


def assert_refused(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert list(body) == ["error"]
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    assert words in body["error"], body["error"]


# -- health and metadata ------------------------------------------------------------------
def test_health_and_metadata(server) -> None:
    client, _ = server
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "unetzoo"
    assert client.get("/v2/models/tiny/ready").json() == {"name": "tiny", "ready": True}
    meta = client.get("/v2/models/tiny").json()
    assert meta["name"] == "tiny" and meta["platform"] == "unetzoo-torch"
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, -1, 3]}]
    assert meta["outputs"] == [{"name": "labels", "datatype": "UINT8", "shape": [-1, -1]}]
    assert meta["parameters"]["task"] == "binary"
    assert meta["parameters"]["class_names"] == ["nucleus"]
    listed = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in listed] == ["tiny"] and listed[0]["channels"] == 3
    assert listed[0]["max_batch"] == 1 and listed[0]["model_calls"] is None
    page = client.get("/")
    assert page.status_code == 200 and "<title>unetzoo serve</title>" in page.text


# -- answers equal predict ----------------------------------------------------------------
def test_an_uploaded_file_gives_the_mask_predict_writes(server, images: Path,
                                                        predicted) -> None:
    client, _ = server
    for path in sorted(images.glob("*.png")):
        response = post_file(client, path.name, path.read_bytes())
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        mask = np.asarray(Image.open(io.BytesIO(response.content)))
        np.testing.assert_array_equal(mask, predicted[path.stem])
        assert set(np.unique(mask)) <= {0, 255}


def test_the_raw_body_and_a_name_without_extension_read_the_same(server, images: Path,
                                                                 predicted) -> None:
    client, _ = server
    path = images / "img_000.png"
    raw = client.post("/v1/models/tiny/predict", content=path.read_bytes(),
                      headers={"content-type": "image/png"})
    unnamed = post_file(client, "scan", path.read_bytes())  # told by its first bytes
    for response in (raw, unnamed):
        assert response.status_code == 200, response.text
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))),
                                      predicted["img_000"])


def test_tensors_give_the_labels_predict_writes(server, images: Path, predicted) -> None:
    client, _ = server
    for path in sorted(images.glob("*.png")):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        expected = predicted[path.stem] // 255
        np.testing.assert_array_equal(labels_of(infer(client, pixels)), expected)
        chw = infer(client, pixels.transpose(2, 0, 1))
        np.testing.assert_array_equal(labels_of(chw), expected)
    gray = np.asarray(Image.open(images / "img_001.png").convert("L"))
    np.testing.assert_array_equal(labels_of(infer(client, gray)).shape, gray.shape)


def test_a_batch_axis_gives_labels_per_image(server, images: Path, predicted) -> None:
    client, _ = server
    stack = np.stack([np.asarray(Image.open(images / f"img_00{i}.png").convert("RGB"))
                      for i in range(2)])
    labels = labels_of(infer(client, stack))
    assert labels.shape == (2, 48, 48)
    for i in range(2):
        np.testing.assert_array_equal(labels[i], predicted[f"img_00{i}"] // 255)


def test_uint16_and_float_tensors_read_as_16_bit_and_float_files(server, checkpoint: Path,
                                                                 images: Path,
                                                                 workdir: Path) -> None:
    """UINT16 data read as a 16-bit file's (/ 65535), FP32 as a float TIFF's (as stored)."""
    client, _ = server
    pixels = np.asarray(Image.open(images / "img_002.png").convert("RGB"))
    deep = (pixels.astype(np.uint16) * 200 + 17)
    floats = (pixels / 300.0).astype(np.float32)
    folder = workdir / "deep"
    folder.mkdir(exist_ok=True)
    tifffile.imwrite(folder / "deep.tif", deep, photometric="rgb")
    tifffile.imwrite(folder / "floats.tif", floats, photometric="rgb")
    expected = predict_files(checkpoint, folder, workdir / "deep_predicted")
    np.testing.assert_array_equal(labels_of(infer(client, deep, "UINT16")),
                                  expected["deep"] // 255)
    np.testing.assert_array_equal(labels_of(infer(client, floats, "FP32")),
                                  expected["floats"] // 255)


def test_an_overlay_has_the_image_size(server, images: Path) -> None:
    client, _ = server
    response = post_file(client, "odd.png", (images / "odd.png").read_bytes(), output="overlay")
    assert response.status_code == 200
    overlay = Image.open(io.BytesIO(response.content))
    assert overlay.size == (56, 40) and overlay.mode == "RGB"


def test_the_id_is_echoed_and_labels_may_be_asked_for_by_name(server, images: Path) -> None:
    client, _ = server
    pixels = np.asarray(Image.open(images / "img_000.png").convert("RGB"))
    body = {"id": "42", "outputs": [{"name": "labels"}], "inputs": [
        {"name": "image", "shape": list(pixels.shape), "datatype": "UINT8",
         "data": pixels.tolist()}]}  # nested data, as the protocol allows
    response = client.post("/v2/models/tiny/infer", json=body)
    assert response.json()["id"] == "42" and response.json()["model_name"] == "tiny"
    assert labels_of(response).shape == (48, 48)


# -- bad requests -------------------------------------------------------------------------
def test_bad_files_get_one_line(server, images: Path) -> None:
    client, _ = server
    good = (images / "img_000.png").read_bytes()
    assert_refused(post_file(client, "notes.png", b"this is not a PNG"), 400, "notes.png")
    assert_refused(post_file(client, "notes.txt", b"plain text"), 415, "not an image")
    assert_refused(post_file(client, "empty.png", b""), 400, "empty")
    assert_refused(post_file(client, "cut.png", good[: len(good) // 2]), 400, "cut.png")
    big = png_bytes(np.zeros((100, 100, 3), np.uint8))
    assert_refused(post_file(client, "big.png", big), 413, "at most 6,400")
    rgba = png_bytes(np.full((8, 8, 4), 200, np.uint8))
    assert post_file(client, "rgba.png", rgba).status_code == 200  # alpha dropped, as predict
    assert_refused(post_file(client, "a.png", good, output="probabilities"), 400, "overlay")
    assert_refused(client.post("/v1/models/tiny/predict", data={"x": "1"}), 415,
                   "not an image")
    two = client.post("/v1/models/tiny/predict",
                      files=[("a", ("a.png", good)), ("b", ("b.png", good))])
    assert_refused(two, 400, "files")
    assert_refused(client.post("/v1/models/tiny/predict", files={"x": (None, "text")}), 400,
                   "no file")


@pytest.mark.parametrize("tensor, status, words", [
    ({"name": "image", "shape": [4, 5, 6, 7, 3], "datatype": "UINT8", "data": [0]}, 400,
     "2 to 4"),
    ({"name": "image", "shape": [0, 5], "datatype": "UINT8", "data": []}, 400, "positive"),
    ({"name": "image", "shape": [6, 6], "datatype": "INT64", "data": [0] * 36}, 400,
     "INT64"),
    ({"name": "image", "shape": [6, 6], "datatype": "UINT8", "data": [0.5] * 36}, 400,
     "whole numbers"),
    ({"name": "image", "shape": [6, 6], "datatype": "UINT8", "data": [300] * 36}, 400,
     "0..255"),
    ({"name": "image", "shape": [6, 6], "datatype": "UINT8", "data": [1] * 35}, 400,
     "needs 36"),
    ({"name": "image", "shape": [6, 6], "datatype": "UINT8", "data": [[1] * 4] * 9}, 400,
     "nested"),
    ({"name": "image", "shape": [6, 6], "datatype": "UINT8", "data": ["a"] * 36}, 400,
     "text"),
    ({"name": "image", "shape": [6, 6], "datatype": "FP32", "data": [1e39] * 36}, 400,
     "finite"),
    ({"name": "image", "shape": [3, 4, 3], "datatype": "UINT8", "data": [0] * 36}, 400,
     "layout"),
    ({"name": "image", "shape": [6, 6, 4], "datatype": "UINT8", "data": [0] * 144}, 400,
     "4 channels; the model expects 3"),
    ({"name": "image", "shape": [8, 8, 8], "datatype": "UINT8", "data": [0] * 512}, 400,
     "can be channels"),
    ({"name": "image", "shape": [100, 100], "datatype": "UINT8", "data": [0]}, 413,
     "at most 6,400"),
    ({"name": "pixels", "shape": [6, 6], "datatype": "UINT8", "data": [0] * 36}, 400,
     "'image'"),
    ({"name": "image", "shape": [6, 6], "datatype": "UINT8"}, 400, "lacks data"),
    ({"name": "image", "shape": [6, 6], "datatype": "UINT8", "data": [0] * 36,
      "parameters": {"layout": "CHW"}}, 400, "does not fit"),
    ({"name": "image", "shape": [6, 6], "datatype": "UINT8", "data": [0] * 36,
      "parameters": {"binary_data_size": 36}}, 400, "binary"),
])
def test_bad_tensors_get_one_line(server, tensor: dict, status: int, words: str) -> None:
    client, _ = server
    response = client.post("/v2/models/tiny/infer", json={"inputs": [tensor]})
    assert_refused(response, status, words)


def test_a_small_image_says_its_layout(server) -> None:
    client, _ = server
    pixels = np.arange(36, dtype=np.uint8).reshape(3, 4, 3)
    labels = labels_of(infer(client, pixels, parameters={"layout": "HWC"}))
    assert labels.shape == (3, 4)
    assert labels_of(infer(client, pixels, parameters={"layout": "CHW"})).shape == (4, 3)


def test_bad_bodies_get_one_line(server) -> None:
    client, _ = server
    post = client.post
    assert_refused(post("/v2/models/tiny/infer", content=b"{not json"), 400, "not JSON")
    assert_refused(post("/v2/models/tiny/infer", json=[1, 2]), 400, "inference request")
    assert_refused(post("/v2/models/tiny/infer", json={"inputs": []}), 400, "0 inputs")
    assert_refused(post("/v2/models/tiny/infer", json={"inputs": [1]}), 400, "an object")
    tensor = {"name": "image", "shape": [6, 6], "datatype": "UINT8", "data": [0] * 36}
    assert_refused(post("/v2/models/tiny/infer",
                        json={"inputs": [tensor], "outputs": [{"name": "logits"}]}), 400,
                   "'logits'")
    assert_refused(post("/v2/models/tiny/infer", json={"inputs": [tensor], "id": 5}), 400,
                   "id")


def test_bodies_over_the_limit_get_413(server) -> None:
    client, _ = server
    big = b"x" * (MAX_BODY + 1)
    assert_refused(client.post("/v2/models/tiny/infer", content=big), 413, "at most 262,144")

    def chunks():  # no Content-Length: counted as read
        for _ in range(40):
            yield b"y" * 8192

    assert_refused(client.post("/v1/models/tiny/predict", content=chunks()), 413,
                   "262,144")
    assert_refused(post_file(client, "a.png", big), 413, "at most 262,144")


def test_unknown_models_routes_and_paths_get_one_line(server) -> None:
    client, _ = server
    assert_refused(client.get("/v2/models/nuclei2"), 404, "served: tiny")
    assert_refused(client.post("/v2/models/other/infer", json={}), 404, "no model named")
    assert_refused(client.get("/v2/models/a%20b"), 400, "not a model name")
    assert_refused(client.get("/v2/models/.hidden/ready"), 400, "not a model name")
    assert_refused(client.get("/v2/nothing"), 404, "no route")
    assert_refused(client.get("/v2/models/tiny/infer"), 405, "GET is not allowed")
    for raw in ("/v2/models/..%2F..%2Fetc%2Fpasswd", "/v2/models/..%2F..%2Ftiny.pt/infer",
                "/v2/models/%2E%2E/ready", "/v1/models/..%2Ftiny/predict"):
        response = client.request("GET" if raw.endswith(("passwd", "ready")) else "POST",
                                  httpx.URL(client.base_url.join("/"), raw_path=raw.encode()))
        assert 400 <= response.status_code < 500, (raw, response.status_code)
        assert list(response.json()) == ["error"] and "\n" not in response.json()["error"]


def test_the_server_keeps_serving_after_bad_requests(server, images: Path, predicted) -> None:
    client, _ = server
    for _ in range(3):
        post_file(client, "junk.png", b"junk")
        client.post("/v2/models/tiny/infer", content=b"[")
    path = images / "img_001.png"
    response = post_file(client, path.name, path.read_bytes())
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(response.content))),
                                  predicted["img_001"])


# -- queue, internal errors, batching -----------------------------------------------------
def test_a_full_queue_answers_503_with_retry_after(checkpoint: Path, images: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from unetzoo.serve.models import ServedModel

    entered, release = threading.Event(), threading.Event()
    labels = ServedModel.labels

    def held(self, image):
        entered.set()
        release.wait(30)
        return labels(self, image)

    monkeypatch.setattr(ServedModel, "labels", held)
    data = (images / "img_000.png").read_bytes()
    with serving([str(checkpoint)], max_queue=1) as (url, _), \
            httpx.Client(base_url=url, timeout=60) as client:
        first: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: first.append(post_file(client, "a.png", data)))
        thread.start()
        assert entered.wait(30)
        busy = post_file(client, "b.png", data)
        assert_refused(busy, 503, "busy")
        assert busy.headers["retry-after"] == "1"
        assert client.get("/v2/health/ready").status_code == 200  # health is not queued
        release.set()
        thread.join(30)
        assert first[0].status_code == 200
        assert post_file(client, "c.png", data).status_code == 200  # the queue drained


def test_an_internal_error_is_one_line_and_logged(checkpoint: Path, images: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    from unetzoo.serve.models import ServedModel

    calls = []
    labels = ServedModel.labels

    def failing_once(self, image):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom\nsecond line")
        return labels(self, image)

    monkeypatch.setattr(ServedModel, "labels", failing_once)
    logger = logging.getLogger("unetzoo")
    logger.addHandler(caplog.handler)
    data = (images / "img_000.png").read_bytes()
    try:
        with serving([str(checkpoint)]) as (url, _), \
                httpx.Client(base_url=url, timeout=60) as client:
            assert_refused(post_file(client, "a.png", data), 500, "RuntimeError: boom")
            assert post_file(client, "a.png", data).status_code == 200
    finally:
        logger.removeHandler(caplog.handler)
    assert any("Traceback" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_batched_requests_equal_predict(checkpoint: Path, images: Path, predicted) -> None:
    """Eight concurrent requests with four workers whose model calls are gathered: each
    answer equals predict's file for its image."""
    paths = sorted(images.glob("*.png")) * 2
    with serving([str(checkpoint)], max_batch=4, batch_wait_ms=50) as (url, models), \
            httpx.Client(base_url=url, timeout=60) as client:
        answers: dict[int, httpx.Response] = {}

        def send(i: int) -> None:
            answers[i] = post_file(client, paths[i].name, paths[i].read_bytes())

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(paths))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        gatherer = models[0].gatherer
    for i, path in enumerate(paths):
        assert answers[i].status_code == 200, answers[i].text
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(answers[i].content))),
                                      predicted[path.stem])
    assert gatherer is not None and gatherer.rows > gatherer.calls  # calls were gathered


def test_multiclass_and_multilabel_answers_equal_predict(workdir: Path, images: Path) -> None:
    multiclass = tiny_checkpoint(workdir / "three.pt", "multiclass", 3)
    multilabel = tiny_checkpoint(workdir / "two.pt", "multilabel", 2)
    expected = predict_files(multiclass, images, workdir / "three")
    from unetzoo.engine.inference.predict import predict_paths

    from .conftest import options
    predict_paths(multilabel, images, workdir / "two", options(), progress=False,
                  overwrite=True)
    path = images / "img_000.png"
    with serving([str(multiclass), str(multilabel)]) as (url, _), \
            httpx.Client(base_url=url, timeout=60) as client:
        palette = Image.open(io.BytesIO(post_file(client, path.name, path.read_bytes(),
                                                  "three").content))
        assert palette.mode == "P"
        np.testing.assert_array_equal(np.asarray(palette), expected["img_000"])
        pages = tifffile.imread(io.BytesIO(post_file(client, path.name, path.read_bytes(),
                                                     "two").content))
        assert pages.shape == (2, 48, 48)
        for k, name in enumerate(("c0", "c1")):
            np.testing.assert_array_equal(
                pages[k], np.asarray(Image.open(workdir / "two" / name / "img_000.png")))
        meta = client.get("/v2/models/two").json()
        assert meta["outputs"][0]["shape"] == [2, -1, -1]
        pixels = np.asarray(Image.open(path).convert("RGB"))
        assert labels_of(infer(client, pixels, model="two")).shape == (2, 48, 48)


def test_a_package_of_another_tool_answers_as_predict(workdir: Path, images: Path) -> None:
    """A bioimage.io package written by another tool reads its own input: uploads and tensors
    go through its reader and answer what predict writes."""
    pytest.importorskip("bioimageio.core")
    from tests.engine.test_bioimageio import foreign_package

    package, _ = foreign_package(workdir / "foreign")
    expected = predict_files(package, images, workdir / "foreign_predicted")
    path = images / "img_001.png"
    with serving([f"other={package}"]) as (url, _), \
            httpx.Client(base_url=url, timeout=60) as client:
        mask = np.asarray(Image.open(io.BytesIO(
            post_file(client, path.name, path.read_bytes(), "other").content)))
        np.testing.assert_array_equal(mask, expected["img_001"])
        pixels = np.asarray(Image.open(path).convert("RGB"))
        np.testing.assert_array_equal(labels_of(infer(client, pixels, model="other")),
                                      expected["img_001"] // 255)
        overlay = post_file(client, path.name, path.read_bytes(), "other", output="overlay")
        assert Image.open(io.BytesIO(overlay.content)).size == (48, 48)


def test_an_instance_model_answers_with_the_labels_predict_writes(workdir: Path,
                                                                   images: Path) -> None:
    """Objects: the file route gives the 16-bit label TIFF predict writes, the tensor route
    INT32 ids."""
    from tests.engine.test_instance_task import instance_checkpoint
    from unetzoo.artefacts.checkpoint import save_checkpoint
    from unetzoo.engine.inference.predict import predict_paths

    from .conftest import options

    checkpoint = instance_checkpoint()
    model = save_checkpoint(workdir / "objects.pt", replace(
        checkpoint, model_spec={**checkpoint.model_spec, "in_channels": 3},
        state_dict=_three_channels(checkpoint.state_dict),
        preprocessing=Preprocessing(3, (0.2,) * 3, (0.2,) * 3, img_size=32)))
    predict_paths(model, images, workdir / "objects", options(), progress=False,
                  overwrite=True)
    path = images / "img_000.png"
    expected = tifffile.imread(workdir / "objects" / "img_000.tif")
    assert expected.dtype == np.uint16 and expected.max() > 0
    with serving([str(model)]) as (url, _), httpx.Client(base_url=url, timeout=60) as client:
        got = tifffile.imread(io.BytesIO(post_file(client, path.name, path.read_bytes(),
                                                   "objects").content))
        np.testing.assert_array_equal(got, expected)
        assert client.get("/v2/models/objects").json()["outputs"][0]["datatype"] == "INT32"
        pixels = np.asarray(Image.open(path).convert("RGB"))
        answer = infer(client, pixels, model="objects").json()["outputs"][0]
        assert answer["datatype"] == "INT32"
        np.testing.assert_array_equal(np.asarray(answer["data"]).reshape(answer["shape"]),
                                      expected)


def _three_channels(state: dict) -> dict:
    """A one-channel model's weights for RGB input: the first conv's kernel repeated / 3."""
    first = next(k for k, v in state.items() if v.ndim == 4)
    return {**state, first: state[first].repeat(1, 3, 1, 1) / 3}
