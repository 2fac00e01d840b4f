"""The small part of Markdown the report writes (headings, pipe tables, bullets, paragraphs, inline code) as
HTML, so a section rendered as Markdown appears in the HTML report unchanged in content."""
from __future__ import annotations

import re
from html import escape

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def inline(text: str) -> str:
    """One line of Markdown text as escaped HTML (``code`` and **bold** kept)."""
    out = escape(text.replace("\\|", "|"))
    out = _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", out)
    return _BOLD.sub(lambda m: f"<strong>{m.group(1)}</strong>", out)


def split_row(line: str) -> list[str]:
    """The cells of one pipe-table row (an escaped ``\\|`` stays inside its cell)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", body)]


def table_html(lines: list[str]) -> str:
    """A pipe table (header, rule, rows) as an HTML table; ``---:`` columns are right-aligned."""
    header, rule, *rows = lines
    right = [cell.endswith(":") and not cell.startswith(":") for cell in split_row(rule)]

    def cells(line: str, tag: str) -> str:
        return "".join(f'<{tag}{" class=num" if i < len(right) and right[i] else ""}>{inline(c)}</{tag}>'
                       for i, c in enumerate(split_row(line)))

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    return f"<table><thead><tr>{cells(header, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def markdown_to_html(text: str, *, heading_offset: int = 1) -> str:
    """``text`` as HTML; ``#`` headings move down ``heading_offset`` levels (a section's own title is h2)."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and re.match(r"^\s*\|?\s*:?-{3,}", lines[i + 1]):
            end = i + 2
            while end < len(lines) and lines[end].lstrip().startswith("|"):
                end += 1
            out.append(table_html(lines[i:end]))
            i = end
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")) + heading_offset, 6)
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
        elif line.lstrip().startswith(("- ", "* ")):
            items = []
            while i < len(lines) and lines[i].lstrip().startswith(("- ", "* ")):
                items.append(f"<li>{inline(lines[i].lstrip()[2:])}</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            paragraph = [inline(line.strip())]
            i += 1
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ", "* ")):
                paragraph.append(inline(lines[i].strip()))
                i += 1
            out.append("<p>" + " ".join(paragraph) + "</p>")
    return "\n".join(out)
