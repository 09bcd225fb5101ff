"""pytest plugin shipped with squall (registered through the ``pytest11`` entry point).

Fixtures and ``async def`` test support are being added; see tests/ for usage.
"""
