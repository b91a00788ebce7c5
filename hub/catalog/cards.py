"""Model cards: Markdown rendered by markdown-it-py, then sanitised by nh3 (ammonia), so a card
can hold no script, no event handler, no `javascript:` link and no image from another host.

A card may start with YAML front matter, as Hugging Face cards do:

    ---
    license: apache-2.0
    datasets: [mnist]
    metrics: {accuracy: 0.99}
    ---
    # My model

which becomes structured metadata on the model's page (scalars, lists and one level of maps).
"""
from __future__ import annotations

import re

import nh3
import yaml
from markdown_it import MarkdownIt

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_MARKDOWN = MarkdownIt("commonmark", {"html": True, "linkify": False}).enable("table")

TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "del", "details", "em", "h1", "h2", "h3",
        "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub",
        "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul"}
ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title", "width", "height"},
              "th": {"align"}, "td": {"align"}, "code": {"class"}}
LINK_SCHEMES = {"http", "https", "mailto"}


def _allowed(tag: str, attribute: str, value: str) -> str | None:
    """Links to http(s), mail, or within the page or the hub; images from the hub or inline
    data only (a remote image would tell another host who reads the card)."""
    if tag == "img" and attribute == "src":
        if value.startswith("/") and not value.startswith("//"):
            return value
        if value.startswith("data:image/") and not value.startswith("data:image/svg"):
            return value
        return None
    if tag == "a" and attribute == "href":
        if value.startswith(("#", "/")) and not value.startswith("//"):
            return value
        scheme = value.split(":", 1)[0].lower() if ":" in value else ""
        return value if scheme in LINK_SCHEMES else None
    return value


def split_front_matter(card: str) -> tuple[dict, str]:
    """(the front matter as a dict, the Markdown after it); a card without front matter, or with
    front matter that is not a YAML mapping, gives {} and the card as it is."""
    match = _FRONT_MATTER.match(card or "")
    if not match:
        return {}, card or ""
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}, card
    if not isinstance(data, dict):
        return {}, card
    return data, card[match.end():]


def render(card: str | None) -> tuple[dict, str]:
    """(front matter, safe HTML of the card)."""
    metadata, body = split_front_matter(card or "")
    html = _MARKDOWN.render(body)
    safe = nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=LINK_SCHEMES | {"data"},
                     attribute_filter=_allowed, link_rel="noopener noreferrer nofollow",
                     strip_comments=True)
    return metadata, safe


def metadata_rows(metadata: dict) -> list[tuple[str, str]]:
    """The front matter as (field, text) rows for a table."""
    rows = []
    for key, value in metadata.items():
        if isinstance(value, dict):
            for sub, item in value.items():
                rows.append((f"{key}.{sub}", _text(item)))
        else:
            rows.append((str(key), _text(value)))
    return rows


def _text(value) -> str:
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return "" if value is None else str(value)
