"""Release descriptions are Markdown: rendered with markdown-it-py (CommonMark, tables) and sanitized with nh3,
so a description can format a model card but never carry script, styles or forms into the page."""

from __future__ import annotations

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

# What a model card may contain; everything else is dropped (its text kept).
TAGS = {
    "p", "br", "hr", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # Raw HTML in the source is shown as text, not passed through; the page's own h1 stays the only h1.
    md = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")

    def heading_open(self, tokens, idx, options, env):
        token = tokens[idx]
        level = min(int(token.tag[1]) + 1, 6)
        return f"<h{level}>"

    def heading_close(self, tokens, idx, options, env):
        level = min(int(tokens[idx].tag[1]) + 1, 6)
        return f"</h{level}>\n"

    md.add_render_rule("heading_open", heading_open)
    md.add_render_rule("heading_close", heading_close)
    return md


def render_markdown(text: str) -> str:
    """Sanitized HTML for a Markdown text (links get rel="noopener noreferrer nofollow")."""
    if not text:
        return ""
    html = _parser().render(text)
    return nh3.clean(
        html,
        tags=TAGS,
        attributes=ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
