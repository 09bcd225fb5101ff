"""Fast paths that Tornado ships as a C extension under the same module name.

Squall's versions are pure Python but avoid per-byte loops, so code that looks for
``speedups`` (as Tornado's does) gets the fast implementation.
"""

from squall._websocket_frames import mask_payload as websocket_mask

__all__ = ["websocket_mask"]
