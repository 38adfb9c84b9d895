"""How the Python API's objects show themselves in IPython and Jupyter.

A front end asks an object for `_repr_html_()` (the drawing) and IPython's pretty printer
for `_repr_pretty_` (the text); both are answered by kprobe_shell.notebook.objects, the
one home of each view, imported only when something is displayed (the engine's modules
that inherit this never pay for it, and IPython is not needed to draw).  Any Jupyter
front end shows the objects this way, with or without `%load_ext kprobe_shell`.
"""
from __future__ import annotations


class Displayed:
    """Drawn in a notebook as the shell draws the same facts."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # IPython's printer prefers a class's own __repr__ to an inherited _repr_pretty_.
        cls._repr_pretty_ = Displayed._repr_pretty_

    def _repr_html_(self) -> str:
        from .notebook.objects import html_of

        return html_of(self)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        from .notebook.objects import text_of

        printer.text(repr(self) if cycle else text_of(self))
