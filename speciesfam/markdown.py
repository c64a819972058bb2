"""Names from the data (file and family names) as the run folder's reports show them: visible text, and one
Markdown table cell (catalog.md, clean.md, trials.md)."""

from __future__ import annotations

import json
import re

# What Markdown would read as markup inside a table cell: a backslash (it escapes what follows), the cell's '|',
# emphasis, code, raw HTML, links, strikethrough, entities; '_' only at a word's edge ('img_001.jpg' stays as it is).
_MARKUP = re.compile(r"[\\|*`<>\[\]~&]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def visible(value: object) -> str:
    """``value`` as text with its control characters shown as Python's string escapes (a newline as ``\\n``, a
    tab as ``\\t``, a zero-width space as ``\\u200b``), a backslash as ``\\\\`` and the spaces at its ends as
    ``\\x20``, so a name stays on its line, shows what it holds ('Felidae ' is not 'Felidae'), and a name holding
    a backslash and an 'n' never reads as one holding a newline; None/NaN empty."""
    text = "" if value is None or value != value else str(value)
    core = text.strip(" ")
    lead, trail = (len(text) - len(text.lstrip(" ")), len(text) - len(text.rstrip(" "))) if core else (len(text), 0)
    shown = "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in core)
    return "\\x20" * lead + shown + "\\x20" * trail


def cell(value: object) -> str:
    """``value`` as one Markdown table cell that renders as ``visible(value)``: markup characters escaped."""
    return _MARKUP.sub(lambda m: "\\" + m.group(0), visible(value))


def prose(value: object) -> str:
    """A cell of the tool's own text (a reason), whose names are already quoted as Python writes them
    ('multi\\nline'): ``own_text``, markup escaped (``cell``'s escaping, on top of the quoting, rendered a name's
    newline as two backslashes and an n)."""
    return _MARKUP.sub(lambda m: "\\" + m.group(0), own_text(value))


def own_text(value: object) -> str:
    """The tool's own text (a reason, whose names are quoted already: 'Cafe\\u0301') on one line: control
    characters shown as escapes, a backslash not doubled (predict's table showed '\\\\u0301': round 69)."""
    text = "" if value is None or value != value else str(value)
    return "".join(c if c.isprintable() or c == "\\" else repr(c)[1:-1] for c in text)


def twins(labels) -> frozenset[str]:
    """The labels that render as another one does: the same text in two Unicode forms (a composed 'é' against
    'e' + a combining accent, as a folder copied from an old Mac names it). ``family_cell`` shows them as JSON."""
    import unicodedata

    forms: dict[str, set[str]] = {}
    for lab in labels:
        if isinstance(lab, str):
            forms.setdefault(unicodedata.normalize("NFC", lab), set()).add(lab)
    return frozenset(lab for group in forms.values() if len(group) > 1 for lab in group)


def family_cell(label: object, alike: frozenset[str] = frozenset()) -> str:
    """``cell(label)``, but a label of ``alike`` (``twins``) as its JSON string with non-ASCII escaped
    ('"Caf\\u00e9"', '"Cafe\\u0301"'): two families that look one in a table show their difference."""
    if label in alike:
        return _MARKUP.sub(lambda m: "\\" + m.group(0), json.dumps(label))
    return cell(label)


def code(text: str) -> str:
    """``text`` (one line, shown verbatim: pass ``visible(name)`` for a name from the data) as one Markdown code
    span, whatever backticks it holds: the fence is one longer than its longest run of backticks, and a space
    pads text that starts or ends with a backtick or with spaces on both sides (Markdown strips one of each)."""
    if not text:
        return ""  # no span holds nothing
    fence = "`" * (max(map(len, re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" or (text[0] == text[-1] == " " and text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def json_line(value: object) -> str:
    """``value`` as JSON on one line, non-ASCII kept readable but invisible characters (control, zero-width,
    format) and combining marks (the accent of a decomposed 'é') as ``\\uXXXX`` escapes: still valid JSON, and
    two names that look alike show their difference."""
    import unicodedata

    return "".join(c if c.isprintable() and not unicodedata.combining(c) else json.dumps(c)[1:-1]
                   for c in json.dumps(value, ensure_ascii=False))


def to_html(text: str) -> str:
    """Markdown (a bundle's MODEL_CARD.md) as HTML for report.html, through markdown-it (CommonMark and tables).
    Raw HTML in it is escaped, never passed through (a family name of the data is in the card); the page showed
    the card as raw Markdown in a <pre>."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
