"""REPORT.html: the Markdown report as one self-contained page for people who would rather click
than scroll: every figure inlined (a data: URI, so the page can be mailed or attached alone), each
## section collapsible (<details>, the first screen open), the same anchors as on GitHub so the
report's own links work.  Markdown is read with the `markdown` package (tables, fenced code)."""
from __future__ import annotations

import base64
import html
import os
import re

from .summary import anchor

STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px;display:block;overflow-x:auto}
td,th{border:1px solid #ccc;padding:2px 6px}th{background:#f3f3f3}
img{max-width:100%}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:12px}
details{border-top:1px solid #ddd;padding:.3em 0}summary{cursor:pointer}summary h2{display:inline}"""


def _inline_images(body: str, folder: str) -> str:
    def data_uri(m):
        src = html.unescape(m.group(2))
        path = os.path.join(folder, src)
        if "://" in src or src.startswith("data:") or not os.path.isfile(path):
            return m.group(0)
        with open(path, "rb") as f:
            return f'{m.group(1)}data:image/png;base64,{base64.b64encode(f.read()).decode()}"'
    return re.sub(r'(<img[^>]*?src=")([^"]+)"', data_uri, body)


def _collapsible(body: str) -> str:
    """Each <h2> and what follows it up to the next, in a <details>; the first (the answers) open."""
    parts = re.split(r"(?=<h2[ >])", body)
    out = [parts[0]]
    for i, part in enumerate(parts[1:]):
        m = re.match(r"(<h2[^>]*>.*?</h2>)(.*)", part, re.S)
        out.append(f"<details{' open' if i == 0 else ''}><summary>{m.group(1)}</summary>{m.group(2)}</details>\n")
    return "".join(out)


def write_html(md_path: str, out_path: str) -> None:
    import markdown

    with open(md_path) as f:
        text = f.read()
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "toc"],
                             extension_configs={"toc": {"slugify": lambda value, sep: anchor(value)[1:]}})
    body = _collapsible(_inline_images(body, os.path.dirname(os.path.abspath(md_path))))
    title = html.escape(next((line[2:] for line in text.splitlines() if line.startswith("# ")), "allocbench report"))
    with open(out_path, "w") as f:
        f.write(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
                f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")
