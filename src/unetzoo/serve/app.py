"""The HTTP server: the Open Inference Protocol (KServe v2) routes, one route that takes an
image file and returns the mask `predict` writes, and a page to try a model in a browser.

Routes (`{name}`: a served model's URL name, `serve.naming`):

- `GET /`: the page (drop an image, see the overlay).
- `GET /v2`: server metadata `{name, version, extensions}`.
- `GET /v2/health/live`, `GET /v2/health/ready`: 200 `{"live": true}`, `{"ready": true}`.
- `GET /v2/models/{name}`: model metadata `{name, versions, platform, inputs, outputs,
  parameters}` (`-1` for dynamic axes; `parameters` say what else the input may be).
- `GET /v2/models/{name}/ready`: 200 `{"name", "ready": true}`.
- `POST /v2/models/{name}/infer`: `{"id"?, "inputs": [{"name": "image", "shape",
  "datatype", "data", "parameters"?: {"layout"}}], "outputs"?: [{"name": "labels"}]}` ->
  `{"model_name", "id"?, "outputs": [{"name": "labels", "shape", "datatype": "UINT8",
  "data"}]}` (labels `H x W`, or `K x H x W` multilabel, `N x ...` for a batch axis).
- `GET /v1/models`: `{"models": [{name, task, class_names, channels, backend, source}]}`.
- `POST /v1/models/{name}/predict`: an image file (the one file of a multipart form, any
  field name; or the raw body, named by `?filename=`) -> the mask `predict` writes (PNG;
  multilabel: a K-page TIFF); `?output=overlay`: the image with the mask tinted (PNG).

Tensors and files are read by `serve.inputs`' rules (those of `predict`); labels are those of
`Predictor.labels` (`serve.models`), so every answer equals `unetzoo predict`'s file.

Every refusal is one line of JSON `{"error": "..."}`: 400 a malformed request or image, 404
an unknown model or route, 405 a wrong method, 413 a body over `max_body_bytes` or an image
over `max_pixels`, 415 a file that is no image format unetzoo reads, 503 (with `Retry-After`)
a full queue. An internal error is a 500 with one line; its traceback goes to the log. The
server keeps serving after each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources
from typing import Any

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import UnetzooError
from ..version import __version__
from .inputs import Upload, check_upload, tensor_pixels, upload
from .models import ServedModel, ServeOptions, labels_datatype
from .naming import NAME_RULE, is_model_name
from .outputs import mask_file, overlay_png
from .replies import RequestError, error_response, from_unetzoo, one_line

log = logging.getLogger("unetzoo")

Handler = Callable[[Request], Awaitable[Response]]


class BodyLimit:
    """ASGI middleware: a request whose body is over `limit` bytes is answered 413, by its
    `Content-Length` before any of it is read, or as soon as the bytes read pass the limit
    (the route catches the `RequestError` the receive channel raises)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _error(self, received: int | None = None) -> RequestError:
        size = f"{received:,} bytes or more" if received is not None else "larger"
        return RequestError(413, f"the request body is {size}; this server reads at most "
                                 f"{self.limit:,} (serve --max-request-mb)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                response = error_response(RequestError(400, "Content-Length is not a number"))
                await response(scope, receive, send)
                return
            if declared > self.limit:
                response = error_response(self._error(declared))
                await response(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise self._error(received)
            return message

        await self.app(scope, limited, send)


def _endpoint(handler: Handler) -> Handler:
    """A route that answers every failure in one line: refusals with their status, user
    errors from below (`UnetzooError`) as 400, anything else as 500 (traceback logged)."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except RequestError as exc:
            return error_response(exc)
        except UnetzooError as exc:
            return error_response(from_unetzoo(exc))
        except HTTPException as exc:  # the form parser's refusals
            return error_response(RequestError(exc.status_code, str(exc.detail)))
        except ClientDisconnect:
            return error_response(RequestError(400, "the client went away mid-request"))
        except Exception as exc:
            log.exception(f"internal error serving {request.method} {request.url.path}")
            return error_response(RequestError(
                500, f"internal error: {type(exc).__name__}: {one_line(str(exc), 200)} "
                     "(the traceback is in the server's log)"))

    wrapped.__name__ = handler.__name__
    return wrapped


class Server:
    """The routes over a set of served models (see the module docstring)."""

    def __init__(self, models: list[ServedModel], options: ServeOptions) -> None:
        self.models = {m.name: m for m in models}
        self.options = options

    def model(self, request: Request) -> ServedModel:
        """The model a route names.

        Raises:
            RequestError: 400 for a name that cannot be a model's (a path, say), 404 for a
                name not served here.
        """
        name = request.path_params["name"]
        if not is_model_name(name):
            raise RequestError(400, f"{name[:80]!r} is not a model name ({NAME_RULE} "
                                    "characters)")
        model = self.models.get(name)
        if model is None:
            raise RequestError(404, f"no model named {name!r} here; served: "
                                    f"{', '.join(self.models)}")
        return model

    # -- health and metadata --------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        return HTMLResponse(_page())

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "unetzoo", "version": __version__, "extensions": []})

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        return JSONResponse({"ready": True})

    async def model_metadata(self, request: Request) -> Response:
        return JSONResponse(self.model(request).metadata())

    async def model_ready(self, request: Request) -> Response:
        return JSONResponse({"name": self.model(request).name, "ready": True})

    async def list_models(self, request: Request) -> Response:
        return JSONResponse({"models": [m.summary() for m in self.models.values()]})

    # -- inference ------------------------------------------------------------------------
    async def infer(self, request: Request) -> Response:
        model = self.model(request)
        model.admit()
        try:
            body = await request.body()
            request_id, tensors = await anyio.to_thread.run_sync(
                self._parse_infer, body, self.options.max_pixels)

            labels = await model.run(
                lambda: [model.labels(model.read_pixels(p)) for p in tensors.images])
        finally:
            model.release()
        stacked = labels[0] if not tensors.batched else np.stack(labels)

        def answer() -> bytes:
            body: dict[str, Any] = {"model_name": model.name, "outputs": [{
                "name": "labels", "datatype": labels_datatype(model.task),
                "shape": list(stacked.shape),
                "data": stacked.ravel().tolist()}]}
            if request_id is not None:
                body["id"] = request_id
            return json.dumps(body, separators=(",", ":")).encode()

        content = await anyio.to_thread.run_sync(answer)  # the model's workers move on
        return Response(content, media_type="application/json")

    @staticmethod
    def _parse_infer(body: bytes, max_pixels: int) -> tuple[Any, _Tensors]:
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise RequestError(400, f"the body is not JSON ({one_line(str(exc), 120)})"
                               ) from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
            raise RequestError(400, 'the body is an inference request: {"inputs": [{"name": '
                                    '"image", "shape": [H, W, C], "datatype": "UINT8", '
                                    '"data": [...]}]}')
        if len(payload["inputs"]) != 1:
            raise RequestError(400, f"{len(payload['inputs'])} inputs; the model takes one, "
                                    "'image'")
        outputs = payload.get("outputs")
        if outputs is not None:
            names = [o.get("name") if isinstance(o, dict) else o for o in outputs] \
                if isinstance(outputs, list) else [outputs]
            unknown = [n for n in names if n != "labels"]
            if unknown:
                raise RequestError(400, f"unknown output {unknown[0]!r}: the model gives one "
                                        "output, 'labels'")
        request_id = payload.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise RequestError(400, "id must be a string")
        item = payload["inputs"][0]
        images, batched = tensor_pixels(item, max_pixels)
        return request_id, _Tensors(images, batched)

    async def predict_file(self, request: Request) -> Response:
        model = self.model(request)
        output = request.query_params.get("output", "mask")
        if output not in ("mask", "overlay"):
            raise RequestError(400, f"output={output!r}: choose mask (the file predict "
                                    "writes) or overlay (the image with the mask tinted)")
        model.admit()
        try:
            item = await self._upload(request)
            await anyio.to_thread.run_sync(check_upload, item, self.options.max_pixels)

            def work() -> tuple[Any, np.ndarray]:
                image = model.read_upload(item)
                return (image if output == "overlay" else None), model.labels(image)

            image, labels = await model.run(work)
        finally:
            model.release()

        def answer() -> tuple[bytes, str]:  # off the model's workers
            if image is None:
                return mask_file(labels, model.checkpoint)
            shown = image if model.shows(image) else model.display_image(item)
            return overlay_png(shown, labels, model.checkpoint), "image/png"

        content, media = await anyio.to_thread.run_sync(answer)
        return Response(content, media_type=media, headers={"X-Unetzoo-Model": model.name})

    async def _upload(self, request: Request) -> Upload:
        """The image file of a request: the file of a multipart form (one file, any field
        name), else the body itself (named by `?filename=`, else told by its bytes)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            form = await request.form(max_files=1, max_fields=16,
                                      max_part_size=self.options.max_body_bytes)
            try:
                files = [v for v in form.values() if isinstance(v, UploadFile)]
                if not files:
                    raise RequestError(400, "the form holds no file: send the image as a file "
                                            "field, e.g. curl -F image=@cells.png")
                return upload(files[0].filename, await files[0].read())
            finally:
                await form.close()
        if kind in ("application/x-www-form-urlencoded", "application/json", "text/plain"):
            raise RequestError(415, f"a {kind} body is not an image: send the file as "
                                    "multipart/form-data (curl -F image=@cells.png) or as the "
                                    "raw body (curl -H 'Content-Type: image/png' "
                                    "--data-binary @cells.png)")
        return upload(request.query_params.get("filename"), await request.body())


@cache
def _page() -> str:
    return resources.files("unetzoo.serve").joinpath("page.html").read_text("utf-8")


class _Tensors:
    """The images of an input tensor and whether it had a batch axis."""

    def __init__(self, images: list[Any], batched: bool) -> None:
        self.images = images
        self.batched = batched


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    path = request.url.path[:200]
    message = (f"no route {request.method} {path}; see GET / and the /v2 routes"
               + ("; a model name is one name, never a path" if "/models/" in path else "")
               ) if status == 404 else one_line(str(getattr(exc, "detail", exc)))
    if status == 405:
        message = f"{request.method} is not allowed on {path}"
    return JSONResponse({"error": message}, status_code=status)


def build_app(models: list[ServedModel], options: ServeOptions) -> ASGIApp:
    """The ASGI application serving `models` (a Starlette app behind the body-size limit);
    the models' workers stop when the application shuts down."""
    server = Server(models, options)
    get, post = ["GET"], ["POST"]
    routes = [
        Route("/", _endpoint(server.page), methods=get),
        Route("/v2", _endpoint(server.server_metadata), methods=get),
        Route("/v2/health/live", _endpoint(server.live), methods=get),
        Route("/v2/health/ready", _endpoint(server.ready), methods=get),
        Route("/v2/models/{name}", _endpoint(server.model_metadata), methods=get),
        Route("/v2/models/{name}/ready", _endpoint(server.model_ready), methods=get),
        Route("/v2/models/{name}/infer", _endpoint(server.infer), methods=post),
        Route("/v1/models", _endpoint(server.list_models), methods=get),
        Route("/v1/models/{name}/predict", _endpoint(server.predict_file), methods=post),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for model in models:
            model.close()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={404: _not_found, 405: _not_found})
    app.state.server = server
    return BodyLimit(app, options.max_body_bytes)
