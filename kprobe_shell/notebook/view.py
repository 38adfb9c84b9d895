"""What a view gives a notebook: the shell's text and its drawing."""
from __future__ import annotations


class View:
    """A view's output: the shell's text as text/plain, the drawing as text/html."""

    def __init__(self, text: str, html_text: str):
        self.text = text
        self.html = html_text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return self.html
