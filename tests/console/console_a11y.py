"""A small accessibility check of an HTML page, in Python: what a screen-reader or keyboard user needs first.

It checks the rendered markup (the DOM a browser serialises, or a page as
served) for: a ``lang`` on ``<html>`` and a ``<title>``; one ``<main>`` and a
``<header>``; a skip link first in the body that targets the main content;
a label for every form control (``<label for>``, a wrapping ``<label>``,
``aria-label`` or ``aria-labelledby``); a name for every button; one ``<h1>``,
first, and no heading level skipped going down; ``alt`` on every image; ids
unique. It stands in for axe-core until that can run here without a download.
"""

from __future__ import annotations

from html.parser import HTMLParser

__all__ = ["accessibility_problems"]

CONTROLS = {"input", "select", "textarea"}
UNLABELLED_INPUTS = {"hidden", "submit", "button", "reset", "image"}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang = ""
        self.title = ""
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, dict[str, str], bool]] = []  # tag, attributes, inside a <label>
        self.buttons: list[list[str]] = []  # the text of each button
        self.headings: list[int] = []
        self.images_without_alt = 0
        self.first_link: dict[str, str] | None = None
        self._stack: list[str] = []
        self._button: list[str] | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append(tag)
        if "id" in attributes:
            self.ids.append(attributes["id"])
        if tag == "html":
            self.lang = attributes.get("lang", "")
        elif tag == "title":
            self._in_title = True
        elif tag == "label" and "for" in attributes:
            self.label_for.add(attributes["for"])
        elif tag in CONTROLS:
            self.controls.append((tag, attributes, "label" in self._stack))
        elif tag == "button":
            self._button = [attributes.get("aria-label", "")]
            self.buttons.append(self._button)
        elif len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self.headings.append(int(tag[1]))
        elif tag == "img" and not attributes.get("alt", "").strip() and attributes.get("role") != "presentation":
            self.images_without_alt += 1
        elif tag == "a" and self.first_link is None and "body" in self._stack:
            self.first_link = attributes
        if tag not in {"input", "meta", "link", "br", "img", "hr"}:
            self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._stack:
            while self._stack.pop() != tag:
                pass
        if tag == "button":
            self._button = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button.append(data)
        if self._in_title:
            self.title += data


def accessibility_problems(html: str, *, navigation: bool = True) -> list[str]:
    """What is wrong with ``html`` for assistive technology, one line each (empty: nothing found).

    ``navigation``: the page must have a ``<nav>`` landmark (every signed-in page does).
    """
    page = _Page()
    page.feed(html)
    problems = []
    if not page.lang.strip():
        problems.append("<html> has no lang attribute")
    if not page.title.strip():
        problems.append("the page has no <title>")
    if page.tags.count("main") != 1:
        problems.append(f"{page.tags.count('main')} <main> landmarks, not one")
    if "header" not in page.tags:
        problems.append("no <header> landmark")
    if navigation and "nav" not in page.tags:
        problems.append("no <nav> landmark")
    skip = page.first_link or {}
    if not skip.get("href", "").startswith("#") or skip["href"][1:] not in page.ids:
        problems.append(f"the first link is not a skip link to the content: {skip}")
    for tag, attributes, wrapped in page.controls:
        if tag == "input" and attributes.get("type", "text") in UNLABELLED_INPUTS:
            continue
        named = wrapped or attributes.get("aria-label", "").strip() or attributes.get("aria-labelledby", "").strip()
        if not named and attributes.get("id") not in page.label_for:
            problems.append(f"<{tag} name={attributes.get('name')!r}> has no label")
    for text in page.buttons:
        if not "".join(text).strip():
            problems.append("a <button> has no name")
    if page.headings.count(1) != 1 or (page.headings and page.headings[0] != 1):
        problems.append(f"the page needs one <h1>, first among its headings; headings: {page.headings}")
    for before, after in zip(page.headings, page.headings[1:]):
        if after > before + 1:
            problems.append(f"heading level skipped: h{before} then h{after}")
    if page.images_without_alt:
        problems.append(f"{page.images_without_alt} <img> without alt text")
    duplicated = sorted({i for i in page.ids if page.ids.count(i) > 1})
    if duplicated:
        problems.append(f"ids used more than once: {duplicated}")
    return problems
