"""The run report as one static HTML page that opens offline from disk.

It is rendered from the same Markdown lines as ``report.md`` (headings, paragraphs with **bold**
and `code`, pipe tables, images), with inline CSS, the run's videos embedded as ``<video>``
elements and the resolved config folded away; every image and video is a file of the run
directory, referenced by a relative path, so the folder can be copied or zipped as it is.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}img,video{max-width:100%;margin:.5em 0}
code{background:#f3f3f3;padding:0 3px}pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}"""


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_to_html(lines: list[str]) -> str:
    """The Markdown subset the report writes -> HTML body."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := re.match(r"^(#{1,3}) (.*)", line):
            level = len(m.group(1))
            out.append(f"<h{level}>{_inline(m.group(2))}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            head, body = _cells(rows[0]), [r for r in rows[1:] if not set(r) <= set("|-: ")]
            out.append("<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>" +
                       "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(r)) + "</tr>" for r in body) +
                       "</table>")
            continue
        elif m := re.match(r"^!\[(.*)\]\((.*)\)$", line):
            out.append(f'<img src="{html.escape(m.group(2))}" alt="{html.escape(m.group(1))}">')
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def report_html(title: str, lines: list[str], run_dir: Path, config: dict[str, Any]) -> str:
    """A whole page: the report's body, the run's videos that exist, and the config."""
    videos = [p.name for p in sorted(run_dir.glob("*.mp4"))]
    body = markdown_to_html(lines)
    for name in videos:
        body += f'\n<h3>{html.escape(name)}</h3>\n<video src="{html.escape(name)}" controls loop muted playsinline></video>'
    cfg = html.escape(json.dumps(config, indent=2, sort_keys=True, default=str))
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n<details><summary>Resolved config</summary><pre>{cfg}</pre>"
            "</details>\n</body></html>\n")
