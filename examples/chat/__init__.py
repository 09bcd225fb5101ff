"""A real-time chat on squall: long polling and WebSocket clients share one message buffer."""
