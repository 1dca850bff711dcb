"""The page of one latent: explanation, scores and LLM cost, firing, activation histogram
(inline SVG), decoder logit lens, examples with tokens highlighted, aligned partners.
Every string from the corpus or an LLM is written with ``html.escape``."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np

from interp.report.dash_examples import Store, latent_examples
from interp.report.htmlkit import short_num, table_html
from interp.report.page import dashboard_page
from interp.report.sweepdata import LatentTable, Point

if TYPE_CHECKING:
    from interp.report.dashboard import DashboardConfig


SOURCE_LABELS = {"scores": "this latent's", "control": "random control", "baseline": "single token"}


class LatentPage:
    """The dashboard of one latent (row ``row`` of the table)."""

    def __init__(
        self,
        point: Point,
        latent: int,
        table: LatentTable,
        row: int,
        why: str,
        cfg: DashboardConfig,
    ) -> None:
        self.point, self.latent, self.table, self.row, self.why, self.cfg = (
            point, latent, table, row, why, cfg)  # fmt: skip

    def render(
        self, store: Store | None, logits: Any, partners: list, pages: set, notes: list[str]
    ) -> str:
        title = f"{self.point.label} latent {self.latent}"
        parts = [
            f'<p><a href="../index.html">&larr; all latents</a> &middot; chosen as: {html.escape(self.why)}</p>',
            f"<h1>{html.escape(title)}</h1>",
            *(f'<p class="missing">{html.escape(n)}</p>' for n in notes),
            self._explanation(),
            "<h2>Scores</h2>" + self._scores(),
            "<h2>Firing</h2>" + self._firing(store),
        ]
        if logits is not None:
            parts.append(
                "<h2>Decoder direction through the unembedding</h2>" + _logit_tables(*logits)
            )
        if store is not None:
            try:
                val, groups = latent_examples(store, self.latent, self.cfg)
                parts.append(
                    "<h2>Activation histogram</h2>" + histogram_svg(val, self.cfg.hist_bins)
                )
                parts += [_example_group(name, ex, store) for name, ex in groups]
            except Exception as err:
                parts.append(f'<p class="missing">examples failed: {html.escape(repr(err))}</p>')
        parts.append("<h2>Aligned partners</h2>" + _partner_list(partners, pages))
        return dashboard_page(title, "".join(parts))

    def _explanation(self) -> str:
        t, r = self.table, self.row
        expl, status = t.text("explanation")[r], t.text("status")[r]
        out = f'<p class="expl">{html.escape(str(expl)) if expl else "(no explanation)"}</p>'
        out += f"<p>status: <b>{html.escape(str(status))}</b></p>"
        error = t.text("error")[r]
        if error:
            out += (
                f"<details><summary>error</summary><pre>{html.escape(str(error))}</pre></details>"
            )
        for key in ("control.explanation", "control_explanation"):
            ctrl = t.text(key)[r]
            if ctrl:
                out += f"<p>random-explanation control: <i>{html.escape(str(ctrl))}</i></p>"
                break
        return out

    def _scores(self) -> str:
        t, r = self.table, self.row
        by: dict[tuple[str, str], dict[str, float]] = {}
        for (source, scorer, metric), col in t.score_cols.items():
            v = t.columns[col][r]
            if np.isfinite(v):
                by.setdefault((scorer, source), {})[metric] = float(v)
        metrics = sorted({m for d in by.values() for m in d})
        rows = [[scorer, SOURCE_LABELS.get(source, source), *(short_num(d.get(m)) for m in metrics)]
                for (scorer, source), d in sorted(by.items())]  # fmt: skip
        cost = [(k, t.number(k)[r]) for k in ("prompt_tokens", "completion_tokens",
                                               "prompt_tokens_computed", "retries", "wall_s")]  # fmt: skip
        cost_s = ", ".join(
            f"{k.replace('_', ' ')} {short_num(v)}" for k, v in cost if np.isfinite(v)
        )
        body = table_html(["scorer", "explanation", *metrics], rows) if rows else \
            '<p class="missing">no scores (the latent was not scored)</p>'  # fmt: skip
        return body + f"<p>LLM cost: {html.escape(cost_s or 'n/a')}</p>" + self._cost_parts()

    def _cost_parts(self) -> str:
        """Tokens per step (``tokens.parts.<step>.<kind>`` columns: explain, score, control)."""
        parts: dict[str, dict[str, str]] = {}
        for name, col in self.table.columns.items():
            bits = name.split(".")
            step = len(bits) == 4 and bits[:2] == ["tokens", "parts"] and col.dtype != object
            if step and np.isfinite(col[self.row]):
                parts.setdefault(bits[2], {})[bits[3]] = short_num(col[self.row])
        if not parts:
            return ""
        kinds = sorted({k for d in parts.values() for k in d})
        rows = [[step, *(d.get(k, "") for k in kinds)] for step, d in sorted(parts.items())]
        return table_html(["step", *(f"{k} tokens" for k in kinds)], rows)

    def _firing(self, store: Store | None) -> str:
        t, r = self.table, self.row
        n = t.number("n_active_tokens")[r]
        freq = f" ({n / store.reader.n_tokens:.2e} of {store.reader.n_tokens} tokens)" \
            if store is not None and np.isfinite(n) and store.reader.n_tokens else ""  # fmt: skip
        items = [f"active tokens: {short_num(n)}{freq}",
                 f"activating contexts: {short_num(t.number('n_active_contexts')[r])}",
                 f"max activation: {short_num(t.number('max_act')[r])}"]  # fmt: skip
        return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def _example_group(name: str, windows: list, store: Store) -> str:
    if not windows:
        return ""
    peak = max((float(a.max()) for _, a in windows), default=0.0) or 1.0
    lines = []
    for ids, acts in windows:
        spans = []
        for token_id, act in zip(ids.tolist(), acts.tolist()):
            text = store.token_text(token_id).replace("\n", "\u21b5")
            alpha = min(1.0, act / peak)
            style = f' style="background:rgba(255,110,0,{alpha:.2f})"' if act > 0 else ""
            spans.append(f'<span class="t" data-act="{act:.3g}" title="{act:.4g}"{style}>'
                         f"{html.escape(text)}</span>")  # fmt: skip
        lines.append(f'<div class="ex">{"".join(spans)}</div>')
    return f"<h3>{html.escape(name)}</h3>" + "".join(lines)


def histogram_svg(val: np.ndarray, bins: int, width: int = 480, height: int = 120) -> str:
    """Inline SVG bar chart of the activation values [n] (non-zero entries only)."""
    val = np.asarray(val, dtype=np.float32)
    if not len(val):
        return '<p class="missing">the latent never fired in the collected tokens</p>'
    counts, edges = np.histogram(val, bins=bins)
    top = counts.max()
    bw = width / bins
    bars = "".join(
        f'<rect x="{i * bw:.1f}" y="{height - c / top * height:.1f}" width="{bw - 1:.1f}" '
        f'height="{c / top * height:.1f}" fill="#f60"><title>{edges[i]:.3g}-{edges[i + 1]:.3g}: '
        f"{c}</title></rect>"
        for i, c in enumerate(counts)
    )
    return (
        f'<svg class="hist" width="{width}" height="{height + 18}" role="img">{bars}'
        f'<text x="0" y="{height + 14}" font-size="11">{edges[0]:.3g}</text>'
        f'<text x="{width}" y="{height + 14}" font-size="11" text-anchor="end">{edges[-1]:.3g}'
        f"</text></svg><p>{len(val)} activations, max count per bin {top}</p>"
    )


def _logit_tables(promoted: list, suppressed: list) -> str:
    def col(items: list) -> str:
        return "".join(f"<tr><td><code>{html.escape(repr(t))}</code></td><td>{v:+.3f}</td></tr>"
                       for t, v in items)  # fmt: skip

    return (
        '<div class="logits"><table><thead><tr><th>promoted</th><th>logit</th></tr></thead>'
        f"<tbody>{col(promoted)}</tbody></table><table><thead><tr><th>suppressed</th>"
        f"<th>logit</th></tr></thead><tbody>{col(suppressed)}</tbody></table></div>"
    )


def _partner_list(partners: list, pages: set) -> str:
    if not partners:
        return (
            '<p class="missing">no aligned partner (no alignment results include this latent)</p>'
        )
    items = []
    for pid, label, latent, cos in sorted(partners, key=lambda x: -x[3]):
        text = html.escape(f"{label} latent {latent} (similarity {cos:.3f})")
        if (pid, latent) in pages:
            items.append(f'<li><a href="../{html.escape(pid)}/{latent}.html">{text}</a></li>')
        else:
            items.append(f"<li>{text}</li>")
    return "<ul>" + "".join(items) + "</ul>"
