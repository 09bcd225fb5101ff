"""Turning ``MODULE:ATTR`` into something an ``HTTPServer`` can serve."""

from __future__ import annotations

import importlib
import inspect
import sys
from typing import Any


class TargetError(Exception):
    """The application named on the command line cannot be loaded or served."""


def import_attribute(spec: str, app_dir: str = ".") -> Any:
    """The object ``ATTR`` (dotted names allowed) of module ``MODULE`` for ``MODULE:ATTR``."""
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise TargetError(f"the app must be given as MODULE:ATTR, not {spec!r}")
    if app_dir is not None and app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name == module_name or (exc.name and module_name.startswith(exc.name + ".")):
            raise TargetError(f"cannot import module {module_name!r}: {exc}") from exc
        raise
    value: Any = module
    for part in attr_path.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise TargetError(f"module {module_name!r} has no attribute {attr_path!r}") from None
    return value


def _required_positional(func: Any) -> int | None:
    """How many positional arguments ``func`` requires, or None when it cannot be told."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return None
    return sum(
        1
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    )


def _is_servable(value: Any) -> bool:
    from squall.httputil import HTTPServerConnectionDelegate

    if isinstance(value, HTTPServerConnectionDelegate):
        return True
    # the old interface: a function called with each HTTPServerRequest
    return callable(value) and not inspect.isclass(value) and _required_positional(value) == 1


def is_asgi_app(value: Any) -> bool:
    """True for an ASGI 3 application: an async function, or an object with an async
    ``__call__``, taking (scope, receive, send)."""
    if inspect.isclass(value) or not callable(value):
        return False
    call = value if inspect.isfunction(value) or inspect.ismethod(value) else value.__call__
    if not inspect.iscoroutinefunction(call) and not inspect.iscoroutinefunction(value):
        return False
    required = _required_positional(value)
    return required is None or required == 3


def serves_as_asgi(target: Any, interface: str = "auto") -> bool:
    """Whether ``resolve_target``'s answer is served through ``squall.asgi``."""
    if interface == "asgi":
        return True
    if interface == "squall":
        return False
    return not _is_servable(target) and is_asgi_app(target)


def _acceptable(value: Any, interface: str) -> bool:
    if interface == "asgi":
        return is_asgi_app(value)
    if interface == "squall":
        return _is_servable(value)
    return _is_servable(value) or is_asgi_app(value)


async def resolve_target(value: Any, factory: bool = False, interface: str = "auto") -> Any:
    """The request callback to give ``HTTPServer`` for the loaded attribute.

    An ``Application`` or other ``HTTPServerConnectionDelegate``, a one-argument request
    callable and (unless ``interface`` is "squall") an ASGI app are served as they are; a
    zero-argument callable (or any callable with ``factory``) is called first, and
    awaited when it returns an awaitable.
    """
    if not factory and _acceptable(value, interface):
        return value
    if not callable(value):
        raise TargetError(
            f"{value!r} is neither an Application, an HTTPServerConnectionDelegate nor callable"
        )
    if factory or _required_positional(value) == 0:
        made = value()
        if inspect.isawaitable(made):
            made = await made
        if _acceptable(made, interface):
            return made
        raise TargetError(f"the factory {value!r} returned {made!r}, which squall cannot serve")
    raise TargetError(
        f"cannot tell how to serve {value!r}: give an Application, a delegate, a function "
        "taking the request, an ASGI app (async, taking scope, receive and send), or a "
        "zero-argument factory (or pass --factory)"
    )
