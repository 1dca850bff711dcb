"""Small HTML pieces shared by the sweep report and the latent dashboards: escaped tables,
notes about missing inputs, number formatting, JSON safe inside ``<script>``."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from typing import Any

import numpy as np


def table_html(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def missing_note(text: str) -> str:
    return f'<p class="missing">{html.escape(text)}</p>'


def fixed(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if digits else f"{int(round(v))}"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:80]


def short_num(v: Any) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{int(v)}" if float(v).is_integer() else f"{v:.3f}"


def json_scalar(v: Any) -> Any:
    """A JSON-able scalar (NaN -> None, numpy -> Python)."""
    if v is None:
        return None
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return (int(f) if f.is_integer() else round(f, 4)) if np.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    return str(v)


def script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>', '&' or line separators survive."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(ch, esc)
    return text
