"""Choosing the event loop: uvloop when it is installed, unless ``SQUALL_NO_UVLOOP`` is set.

``import squall`` (and so any squall module) installs uvloop's policy, so that a program
that imports squall and then calls ``asyncio.run()`` runs on uvloop.
"""

from __future__ import annotations

import asyncio
import os
import warnings


def uvloop_disabled() -> bool:
    """True when ``SQUALL_NO_UVLOOP`` is set to anything but an empty/false value."""
    value = os.environ.get("SQUALL_NO_UVLOOP", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def install_uvloop_policy() -> None:
    """Installs uvloop's policy if uvloop is importable and asyncio's default is in place."""
    if uvloop_disabled():
        return
    try:
        import uvloop
    except ImportError:
        return
    with warnings.catch_warnings():
        # Python 3.14 deprecates the policy API; uvloop still relies on it.
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        # Only replace asyncio's own default: an application's explicit choice wins.
        if type(policy) is asyncio.DefaultEventLoopPolicy:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
