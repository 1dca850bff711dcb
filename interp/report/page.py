"""Page layout: the sweep report's page (CSS, navigation, PNG images beside it, atomic
swap of its folder) and the latent dashboards' page frame."""

from __future__ import annotations

import html
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from interp.report.htmlkit import missing_note
from interp.runs import tmp_name

Section = tuple[str, str]


class Images:
    """PNG files beside the page: ``add`` writes one and returns its <img>, or the note."""

    def __init__(self, out: Path, prefix: str) -> None:
        self.dir, self.prefix = out / "img", prefix

    def add(self, name: str, png: bytes | None, missing: str) -> str:
        if png is None:
            return missing_note(missing) if missing else ""
        self.dir.mkdir(parents=True, exist_ok=True)
        file = f"{self.prefix}{name}.png"
        (self.dir / file).write_bytes(png)
        return f'<img src="img/{html.escape(file)}" alt="{html.escape(name)}">'


REPORT_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.missing{color:#a40;font-style:italic}img{max-width:100%}
nav a{margin-right:1em}.meta{color:#666;font-size:.85em}
"""


def write_page(path: Path, title: str, sources: list[str], sections: list[Section]) -> None:
    nav = "".join(f'<a href="#s{i}">{html.escape(t)}</a>' for i, (t, _) in enumerate(sections))
    body = "".join(
        f'<h2 id="s{i}">{html.escape(t)}</h2>\n{b}\n' for i, (t, b) in enumerate(sections)
    )
    meta = "<br>".join(html.escape(s) for s in sources)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    page = (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title><style>{REPORT_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">{meta}<br>written {stamp}</p><nav>{nav}</nav>{body}</body></html>'
    )
    path.write_text(page, encoding="utf-8")


def build_dir(final: Path, build: Callable[[Path], None]) -> None:
    """Build a directory under a temporary name, then swap it in for ``final``: readers
    see the old report or the new one, never half of one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(final)
    tmp.mkdir()
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = tmp_name(final) if final.exists() else None
    if old is not None:
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


DASHBOARD_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
h1{font-size:1.3em}h2{font-size:1.1em;border-bottom:1px solid #ddd;margin-top:1.4em}
h3{font-size:.95em;margin:.8em 0 .3em}table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3;cursor:pointer}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
.ex{font-family:ui-monospace,monospace;font-size:.85em;white-space:pre-wrap;margin:2px 0;
 padding:3px;border-bottom:1px solid #eee}
.t{position:relative;border-radius:2px}.t:hover{outline:1px solid #333}
.t:hover::after{content:attr(data-act);position:absolute;left:0;top:-1.5em;background:#222;
 color:#fff;font-size:.75em;padding:1px 4px;border-radius:3px;white-space:nowrap;z-index:2}
.expl{font-size:1.1em;background:#f6f6ff;padding:.5em;border-left:3px solid #66c}
.missing{color:#a40;font-style:italic}.logits{display:flex;gap:2em}
"""


def dashboard_page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f'</title><link rel="icon" href="data:,"><style>{DASHBOARD_CSS}</style></head>'
        f"<body>{body}</body></html>"
    )
