"""The error a model raises when the data it was sent is not what it accepts.

Inside MLServer any other exception becomes an HTTP 500 with no useful text.
Deriving from ``mlserver.errors.MLServerError`` makes MLServer answer 400 with
our message, and MLServer keeps that status even when the model runs in a
parallel worker process.  In a notebook without MLServer installed the same
class is a plain ``ValueError``.
"""
from __future__ import annotations

try:
    from mlserver.errors import MLServerError as _ServingError
except ImportError:  # pragma: no cover - exercised only where MLServer is absent

    class _ServingError(Exception):  # type: ignore[no-redef]
        def __init__(self, msg: str, status_code: int = 400):
            super().__init__(msg)
            self.status_code = status_code


class ModelInputError(_ServingError, ValueError):
    """The request reached the model, but its data is not what the model accepts."""

    def __init__(self, msg: str):
        super().__init__(msg, 400)


class ModelAnswerError(_ServingError, ValueError):
    """The model ran but its answer cannot be sent (e.g. NaN or infinity in JSON).

    A 500 from MLServer, with our message instead of "Internal Server Error"."""

    def __init__(self, msg: str):
        super().__init__(msg, 500)
