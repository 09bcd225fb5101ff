"""ASGI in both directions (the private half; ``squall.asgi`` is the public face).

Server side: ``_server.ASGIDelegate`` is an ``HTTPServerConnectionDelegate`` whose message
delegates (``_http``, ``_websocket``) turn squall's HTTP/1 exchanges and WebSocket frames
into ASGI 3 events for an application; ``_lifespan`` runs the lifespan protocol.
Adapter side: ``_adapter.ASGIAdapter`` is an ASGI 3 callable that runs a squall
``Application`` under any ASGI server, through an ``HTTPConnection`` that writes ASGI
messages (``_adapter_ws`` for WebSocketHandler).

Nothing here imports ``squall.asgi``.
"""
