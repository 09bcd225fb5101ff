"""A directory to put first on ``PYTHONPATH``: its ``tornado`` package is squall.

Used by ``python -m squall.tornado_compat``; see ``squall.tornado_compat``.
"""
