"""The exceptions a handler raises to end a request with an error or at once."""

from __future__ import annotations

import http.client
from typing import Any, Optional

_RESPONSES = http.client.responses


class HTTPError(Exception):
    """An exception that turns into an HTTP error response.

    ``log_message`` (with ``args`` %-formatted into it) goes to the log, never to the
    client; ``reason`` replaces the standard reason phrase of ``status_code``.
    """

    def __init__(
        self,
        status_code: int = 500,
        log_message: Optional[str] = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        self.status_code = status_code
        self._log_message = log_message
        self.args = args
        self.reason = kwargs.get("reason", None)

    @property
    def log_message(self) -> Optional[str]:
        """The log message with its arguments substituted."""
        return self.get_message()

    def get_message(self) -> Optional[str]:
        if self._log_message and self.args:
            return self._log_message % self.args
        return self._log_message

    def __str__(self) -> str:
        message = "HTTP %d: %s" % (
            self.status_code,
            self.reason or _RESPONSES.get(self.status_code, "Unknown"),
        )
        log_message = self.get_message()
        if log_message:
            return message + " (" + log_message + ")"
        return message


class Finish(Exception):
    """Raise to end the request at once; the response is finished with what was written
    (plus the exception's argument, if any, passed to :meth:`RequestHandler.finish`)."""


class MissingArgumentError(HTTPError):
    """Raised by :meth:`RequestHandler.get_argument` for a required argument that is absent
    (a 400 Bad Request)."""

    def __init__(self, arg_name: str) -> None:
        super().__init__(400, "Missing argument %s" % arg_name)
        self.arg_name = arg_name
