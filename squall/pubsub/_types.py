"""The values and errors every hub shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

Data = Union[str, bytes]
OverflowPolicy = Literal["drop-oldest", "disconnect"]
OVERFLOW_POLICIES = ("drop-oldest", "disconnect")


@dataclass(frozen=True, slots=True)
class Message:
    """One published message: its channel, the hub's id for it (a cursor) and the data,
    as the type it was published with (``str`` or ``bytes``)."""

    channel: str
    id: str
    data: Data


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages after ``last_id`` (the last one this subscription delivered, None if it
    delivered none) may be missing before the next message.

    ``reason``: ``"overflow"`` (the subscriber fell behind its queue), ``"reconnect"``
    (the hub's connection was lost and messages were published meanwhile), ``"reset"``
    (the server lost the channel's data, e.g. restarted without persistence),
    ``"trimmed"`` (the cursor is older than what the server keeps) or ``"missed"``
    (``since=`` asked for messages the backend does not keep).
    """

    channel: str
    last_id: str | None
    reason: str


Event = Union[Message, Gap]


class PubSubError(Exception):
    """Base class of squall.pubsub's errors."""


class PublishError(PubSubError):
    """The message was not sent: the server is unreachable, or did not answer in time.

    ``maybe_sent`` is true after a timeout: the request may have reached a server that
    was only slow (or stopped), which can still deliver it later.
    """

    def __init__(self, message: str, maybe_sent: bool = False) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class SubscriberOverflow(PubSubError):
    """Raised by a subscription with ``overflow="disconnect"`` whose queue filled up."""


def id_key(message_id: str) -> tuple[int, int]:
    """The sort key of a message id: ``"12"`` -> (12, 0), ``"1700000000000-3"`` ->
    (1700000000000, 3). Ids of one channel compare in publishing order."""
    first, _, second = message_id.partition("-")
    try:
        return int(first), int(second or 0)
    except ValueError:
        raise ValueError(f"not a squall.pubsub message id: {message_id!r}") from None
