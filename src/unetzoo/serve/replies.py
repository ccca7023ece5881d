"""What the server answers when a request cannot be served: a status and one line of JSON,
`{"error": "..."}` (the Open Inference Protocol's error object), never a traceback."""

from __future__ import annotations

from starlette.responses import JSONResponse

from ..errors import UnetzooError


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and one line saying why.

    Args:
        status: the HTTP status (4xx for the client's request, 503 when a queue is full).
        message: what is wrong and, where it helps, what would be accepted (one line).
        headers: extra response headers (e.g. `Retry-After`).
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_line(message)
        self.headers = headers or {}


def one_line(text: str, limit: int = 500) -> str:
    """The first line of `text`, at most `limit` characters."""
    lines = str(text).strip().splitlines()
    line = lines[0] if lines else "error"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def from_unetzoo(error: UnetzooError) -> RequestError:
    """A user error raised below (a broken image, a channel count that does not fit, an
    input a fixed-size graph cannot take) as a 400 (413 for an image over the pixel limit
    of `data.io`)."""
    status = 413 if "guard against decompression bombs" in str(error) else 400
    return RequestError(status, str(error))


def error_response(error: RequestError) -> JSONResponse:
    """The JSON response of a refused request."""
    return JSONResponse({"error": error.message}, status_code=error.status,
                        headers=error.headers)
