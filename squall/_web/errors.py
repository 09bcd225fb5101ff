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
        super().__init__(*args)  # (keeps the format arguments as self.args)
        self.status_code = status_code
        self.reason: Optional[str] = kwargs.get("reason")
        self._log_message = log_message

    @property
    def log_message(self) -> Optional[str]:
        """The message as given, still to be %-formatted with ``args``."""
        template = self._log_message
        if not template or self.args:
            return template
        # Without arguments the text is final; doubling any % keeps it so when formatted.
        return template.replace("%", "%%")

    def get_message(self) -> Optional[str]:
        """The log message with its arguments substituted."""
        template = self._log_message
        return template % self.args if template and self.args else template

    def __str__(self) -> str:
        phrase = self.reason or _RESPONSES.get(self.status_code, "Unknown")
        detail = self.get_message()
        return "HTTP %d: %s%s" % (self.status_code, phrase, f" ({detail})" if detail else "")


class Finish(Exception):
    """Raise to end the request at once; the response is finished with what was written
    (plus the exception's argument, if any, passed to :meth:`RequestHandler.finish`)."""


class MissingArgumentError(HTTPError):
    """Raised by :meth:`RequestHandler.get_argument` for a required argument that is absent
    (a 400 Bad Request)."""

    def __init__(self, arg_name: str) -> None:
        super().__init__(400, f"Missing argument {arg_name}")
        self.arg_name = arg_name
