"""Names from the data (file and family names) as the run folder's reports show them: visible text, and one
Markdown table cell (catalog.md, clean.md, trials.md)."""

from __future__ import annotations


def visible(value: object) -> str:
    """``value`` as text with its control characters shown as escapes (a newline as ``\\n``, a tab as ``\\t``,
    a zero-width space as ``\\u200b``), so a name stays on its line and shows what it holds; None/NaN empty."""
    text = "" if value is None or value != value else str(value)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def cell(value: object) -> str:
    """``value`` as one Markdown table cell: ``visible`` text with '|' escaped."""
    return visible(value).replace("|", "\\|")
