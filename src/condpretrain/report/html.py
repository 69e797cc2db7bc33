"""The report as blocks, rendered twice: ``report.md`` (figures beside it) and a
self-contained ``report.html`` (figures base64-embedded, one file to mail around).
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass

from condpretrain.report.tables import Table


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Picture:
    title: str
    filename: str  # relative to the report's folder, e.g. figures/cost.png
    png: bytes


@dataclass
class BulletList:
    items: list[str]


@dataclass
class Section:
    """Blocks under a heading that a link can reach: ``<section id=...>`` in HTML."""

    anchor: str
    title: str
    blocks: list[Block]


Block = Heading | Paragraph | Table | Picture | BulletList | Section


def pictures(blocks: list[Block]) -> list[Picture]:
    """Every picture of the blocks, those inside sections included, in reading order."""
    found: list[Picture] = []
    for block in blocks:
        if isinstance(block, Picture):
            found.append(block)
        elif isinstance(block, Section):
            found += pictures(block.blocks)
    return found


def markdown_table(table: Table) -> str:
    def cell(i: int, j: int, text: str) -> str:
        text = text.replace("|", "\\|")
        return f"**{text}**" if (i, j) in table.bold else text

    lines = ["| " + " | ".join(table.header) + " |",
             "|" + "|".join("---" if j < table.text_columns else "---:" for j in range(len(table.header))) + "|"]
    lines += ["| " + " | ".join(cell(i, j, t) for j, t in enumerate(row)) + " |"
              for i, row in enumerate(table.rows)]
    return "\n".join(lines)


def to_markdown(title: str, blocks: list[Block]) -> str:
    return "\n\n".join([f"# {title}", *_markdown_parts(blocks)]) + "\n"


def _markdown_parts(blocks: list[Block]) -> list[str]:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Section):
            parts += [f"## {block.title}", *_markdown_parts(block.blocks)]
        elif isinstance(block, BulletList):
            parts.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(f"**{block.title}**\n\n{markdown_table(block)}"
                         + (f"\n\n_{block.note}_" if block.note else ""))
        elif isinstance(block, Picture):
            parts.append(f"![{block.title}]({block.filename})")
    return parts


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 .3em}
th,td{border:1px solid #ccc;padding:3px 8px;font-size:13px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f2f2f2} caption{font-weight:bold;text-align:left;padding:4px 0}
p.note{font-size:12px;color:#555;margin-top:0} img{max-width:100%;margin:.5em 0}
figure{display:inline-block;margin:.5em 1em .5em 0} figcaption{font-size:12px;color:#555}
section#findings{border-left:4px solid #4a7;padding-left:1em} li{margin:.3em 0}
"""


def html_table(table: Table) -> str:
    out = [f"<table><caption>{html.escape(table.title)}</caption><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in table.header]
    out.append("</tr>")
    for i, row in enumerate(table.rows):
        out.append("<tr>")
        for j, text in enumerate(row):
            body = html.escape(text)
            if (i, j) in table.bold:
                body = f"<strong>{body}</strong>"
            out.append(f"<td class=\"num\">{body}</td>" if j >= table.text_columns else f"<td>{body}</td>")
        out.append("</tr>")
    out.append("</table>")
    if table.note:
        out.append(f"<p class=\"note\">{html.escape(table.note)}</p>")
    return "".join(out)


def to_html(title: str, blocks: list[Block]) -> str:
    parts = ["<!DOCTYPE html><html><head><meta charset=\"utf-8\">",
             f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", *_html_parts(blocks), "</body></html>\n"]
    return "\n".join(parts)


def _html_parts(blocks: list[Block]) -> list[str]:
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Section):
            parts += [f"<section id=\"{html.escape(block.anchor)}\">",
                      f"<h2>{html.escape(block.title)}</h2>", *_html_parts(block.blocks),
                      "</section>"]
        elif isinstance(block, BulletList):
            parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>"
                                          for item in block.items) + "</ul>")
        elif isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            parts.append(f"<h{level}>{html.escape(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text)}</p>")
        elif isinstance(block, Table):
            parts.append(html_table(block))
        elif isinstance(block, Picture):
            data = base64.b64encode(block.png).decode("ascii")
            parts.append(f"<figure><img alt=\"{html.escape(block.title)}\" "
                         f"src=\"data:image/png;base64,{data}\">"
                         f"<figcaption>{html.escape(block.title)}</figcaption></figure>")
    return parts
