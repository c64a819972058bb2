"""Markdown of the run folder's reports (catalog.md, clean.md, trials.md): any value as one table cell."""

from __future__ import annotations


def cell(value: object) -> str:
    """``value`` as one Markdown table cell: None/NaN empty, control characters (a newline or tab in a file or
    family name) shown as escapes so the row stays one line, and '|' escaped."""
    text = "" if value is None or value != value else str(value)
    text = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)
    return text.replace("|", "\\|")
