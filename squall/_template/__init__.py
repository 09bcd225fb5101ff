"""The private parts of ``squall.template``; that module re-exports what is public.

Imports run one way only: ``parse`` (source to node tree) comes first; ``runtime`` (the
helpers generated code calls) stands alone; ``codegen`` (node tree to Python source)
imports ``parse``; ``compiled`` (``Template``) imports those three; ``loaders`` imports
``compiled``. None of them imports ``squall.template``, and this package imports nothing,
so loading one part does not load the rest.
"""
