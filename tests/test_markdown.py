"""A name from the data reads the same in a rendered Markdown report as in the console: nothing in it becomes
markup (emphasis, raw HTML, links, a second cell), and every character it holds is shown."""

import html
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from speciesfam.markdown import cell, code, family_cell, json_line, twins, visible

MARKUP = "\\|*_`<>[]()~&#!:;-. a1\n\t\u200b"


def render(markdown: str) -> str:
    """HTML as a renderer shows it (CommonMark + GFM tables and strikethrough)."""
    import markdown_it

    return markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


def rendered_cell(text: str) -> str:
    """The one cell of a one-row GFM table holding ``text``."""
    cells = re.findall(r"<td>(.*?)</td>", render(f"| h |\n|---|\n| {text} |\n"), re.S)
    assert len(cells) == 1, cells  # one cell, whatever '|' the name holds
    return html.unescape(cells[0])


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=30) | st.text(alphabet=MARKUP, max_size=20))
def test_a_name_renders_as_its_visible_text(name):
    assert rendered_cell(cell(name)) == visible(name)  # edge spaces too, shown as \\x20


def test_look_alike_names_stay_apart():
    """A newline and a backslash followed by 'n' (or a zero-width space) read differently everywhere."""
    assert visible("a\nb") == "a\\nb" and visible("a\\nb") == "a\\\\nb" and visible("Rani\u200bdae") == "Rani\\u200bdae"
    assert len({rendered_cell(cell(n)) for n in ("a\nb", "a\\nb", "a\\\\nb", "anb")}) == 4
    assert rendered_cell(cell("Felidae ")) == "Felidae\\x20" != rendered_cell(cell("Felidae"))  # a table trims
    assert rendered_cell(cell("_Felidae_ <b>x</b> [a](b) a|b")) == "_Felidae_ <b>x</b> [a](b) a|b"
    assert cell("img_001.jpg") == "img_001.jpg"  # file names stay readable as plain text too


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30) | st.text(alphabet=MARKUP + "`", max_size=20))
def test_a_code_span_shows_any_name_verbatim(name):
    """catalog.md's look-alike labels, clean.md's warnings and the model card put names in code spans: a name
    holding backticks ended its span early."""
    spans = re.findall(r"<code>(.*?)</code>", render(f"- {code(visible(name))}\n"), re.S)
    assert [html.unescape(s) for s in spans] == ([visible(name)] if name else [])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=5))
def test_the_model_cards_family_list_is_json_and_shows_invisible_characters(labels):
    import json

    line = json_line(labels)
    assert json.loads(line) == labels and "\n" not in line and line.isprintable()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12) | st.text(alphabet="e\u0301\u00e9C|\\`*_ \n", max_size=8))
def test_a_family_that_renders_as_another_shows_as_its_json_string(name):
    """clean.md, catalog.md and the model card showed 'Café' in its composed and its decomposed form alike: two
    rows of one name. A name with a twin in another Unicode form renders as its JSON string, all ASCII."""
    import json
    import unicodedata

    other = unicodedata.normalize("NFD" if unicodedata.normalize("NFC", name) == name else "NFC", name)
    alike = twins([name, other, "Felidae"])
    assert alike == ({name, other} if other != name else frozenset())
    shown = rendered_cell(family_cell(name, alike))
    assert shown == (json.dumps(name) if name in alike else visible(name))
    if other != name:
        assert shown != rendered_cell(family_cell(other, alike)) and json.loads(shown) == name


def test_a_reason_quoting_a_name_renders_as_the_names_own_cell_does():
    """catalog.md's conflict reason showed 'multi\\\\nline' beside the label cell's multi\\nline: the name, quoted
    as Python writes it, was escaped again (hostile tester round 33)."""
    from speciesfam.markdown import cell, prose

    label = "multi\nline"
    reason = f"conflict: the same bytes are also listed under {label!r}"
    assert prose(reason) == "conflict: the same bytes are also listed under 'multi\\\\nline'"
    assert cell(label) == "multi\\\\nline"  # both render as multi\nline
    assert prose("tab\there | pipe") == "tab\\\\there \\| pipe" and prose(None) == ""
