"""Integration with other event loops and frameworks (asyncio, Twisted)."""
