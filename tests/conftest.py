"""Fixtures shared by the whole test suite."""

from collections.abc import Iterator

import pytest

from squall.ioloop import IOLoop


@pytest.fixture
def new_ioloop() -> Iterator[IOLoop]:
    """A fresh IOLoop that is not made current; closed (with its fds) after the test."""
    loop = IOLoop(make_current=False)
    try:
        yield loop
    finally:
        loop.close(all_fds=True)
