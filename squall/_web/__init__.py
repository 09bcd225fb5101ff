"""The parts of :mod:`squall.web`, one concern a module; import them from ``squall.web``.

Lower modules never import higher ones: ``errors``, ``cookies``, ``signing`` and
``transforms`` stand alone; ``handler`` (RequestHandler) builds on them; ``ui``,
``handlers`` and ``static`` build on ``handler``; ``application`` sits on top.
"""
