"""Static latent dashboards (one HTML page per latent, like Neuronpedia/SAEDashboard) and
an index page to search and sort them. Offline: no CDN, no server, a little vanilla JS.

A page shows: the explanation with every score (real explanation, random-explanation
control, single-token baseline) and its LLM token cost; firing statistics; a histogram of
the latent's activations; the tokens its decoder direction promotes and suppresses most;
its top-activating examples and examples from each activation quantile, tokens
highlighted by activation (hover a token for its value); and its aligned partners in
other dictionaries (links when their page exists).

Bounded: per sweep point, the ``top_n`` best- and ``bottom_n`` worst-scored latents and
a seeded sample of ``sample_n`` others get pages (:class:`DashboardConfig`).

Promoted / suppressed tokens ("logit lens" of the decoder direction): for a decoder row
``d`` [H] of residual width, ``logits_V = W_U (g * d)`` where ``W_U`` [V, H] is the
subject model's unembedding and ``g`` [H] the weight of its final norm. The norm's
1/rms (or 1/std) factor is a positive scalar per position, so it changes no ranking and
is left out; a LayerNorm's mean subtraction is applied as centring ``d``; norm and
unembedding biases are the same for every latent and left out. A dictionary whose
decoder is not of residual width (neurons at ``mlp.down_proj:input``) is first mapped
through that Linear module's weight (its contribution to the residual stream); any other
width gets no token lists, and the page says why.

Safety: every string from the corpus or an LLM is written with ``html.escape``; the
index's data is JSON inside ``<script type="application/json">`` with ``<``, ``>``, ``&``
and U+2028/9 escaped, so a planted ``</script>`` cannot close it, and the JS writes it
with ``textContent`` only.

Legend: ``L`` selected latents, ``H`` residual width, ``V`` vocabulary, ``W`` window tokens.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from interp.report.sweepdata import Alignment, LatentTable, Point

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DashboardConfig:
    """How many latent pages, and what each shows."""

    top_n: int = 20  # best-scored latents per point (by rank_by)
    bottom_n: int = 20  # worst-scored latents per point
    sample_n: int = 20  # a seeded random sample of the other latents, any status
    rank_by: str = ""  # scorer ranking latents; "" = the first scorer with scores
    n_top_examples: int = 10  # strongest activating contexts shown
    n_quantiles: int = 4  # activation quantiles of the other examples
    per_quantile: int = 3  # examples drawn from each quantile
    window: int = 32  # tokens per example (at most the context length)
    n_logit_tokens: int = 10  # promoted and suppressed tokens listed
    hist_bins: int = 30
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("top_n", "bottom_n", "sample_n", "n_top_examples", "per_quantile"):
            if getattr(self, name) < 0:
                raise ValueError(f"dashboards.{name}={getattr(self, name)} must be >= 0")
        for name in ("n_quantiles", "window", "hist_bins"):
            if getattr(self, name) < 1:
                raise ValueError(f"dashboards.{name}={getattr(self, name)} must be >= 1")


# ----------------------------------------------------------------------------- selection


def select_latents(table: LatentTable, mask: np.ndarray, cfg: DashboardConfig) -> dict[int, str]:
    """Row index -> why it was chosen ("top", "bottom", "sample") among rows ``mask``."""
    rows = np.flatnonzero(mask)
    scorer = cfg.rank_by or next(iter(table.scorers("scores")), "")
    if cfg.rank_by and cfg.rank_by not in table.scorers("scores"):
        raise ValueError(
            f"dashboards.rank_by={cfg.rank_by!r} has no scores in the table: use one of "
            f"{table.scorers('scores')}"
        )
    chosen: dict[int, str] = {}
    if scorer:
        score = table.score(scorer)[rows]
        ranked = rows[np.isfinite(score)][np.argsort(-score[np.isfinite(score)], kind="stable")]
        for r in ranked[: cfg.top_n]:
            chosen[int(r)] = "top"
        for r in ranked[::-1][: cfg.bottom_n]:
            chosen.setdefault(int(r), "bottom")
    rest = np.array([r for r in rows if int(r) not in chosen], dtype=int)
    rng = np.random.default_rng(cfg.seed)
    for r in rng.choice(rest, size=min(cfg.sample_n, len(rest)), replace=False):
        chosen[int(r)] = "sample"
    return chosen


# ----------------------------------------------------------------------------- examples


class _Store:
    """The latent store and tokenizer of one point, opened lazily."""

    def __init__(self, point: Point) -> None:
        from interp.models.load import load_tokenizer
        from interp.store import StoreReader

        self.reader = StoreReader(point.paths.store_dir())
        self.token_ids = self.reader.token_ids()
        self.ctx_len = point.cfg.data.ctx_len
        self.tokenizer = load_tokenizer(point.cfg.model.name)
        self._text: dict[int, str] = {}

    def token_text(self, token_id: int) -> str:
        if token_id not in self._text:
            self._text[token_id] = self.tokenizer.decode([int(token_id)])
        return self._text[token_id]


def latent_examples(
    store: _Store, latent: int, cfg: DashboardConfig
) -> tuple[np.ndarray, list[tuple[str, list[tuple[np.ndarray, np.ndarray]]]]]:
    """The latent's activation values [n] and its example groups: ("top", windows), then
    one group per quantile; a window is (token ids [W], activations [W])."""
    from interp.latents.examples import active_contexts, quantile_of_rank, top_contexts

    acts = store.reader.latent(latent)
    tok, val = np.asarray(acts.tok, np.int64), np.asarray(acts.val, np.float32)
    found = active_contexts(tok, val, store.ctx_len)
    window = min(cfg.window, store.ctx_len)
    cut = _window_cutter(tok, val, store.token_ids, store.ctx_len, window)
    top = top_contexts(found, cfg.n_top_examples)
    groups = [("Top activations", [cut(c, m) for c, m in zip(top.context, top.max_tok)])]
    order = np.argsort(-found.max_act, kind="stable")
    quantile = quantile_of_rank(len(order), cfg.n_quantiles)
    rng = np.random.default_rng((cfg.seed, latent))
    for q in range(min(cfg.n_quantiles, len(order))):
        pool = order[quantile == q]
        pick = np.sort(rng.choice(pool, size=min(cfg.per_quantile, len(pool)), replace=False))
        lo, hi = float(found.max_act[pool].min()), float(found.max_act[pool].max())
        groups.append((f"Quantile {q + 1}/{cfg.n_quantiles} (max activation {lo:.3g} to {hi:.3g})",
                       [cut(found.context[i], found.max_tok[i]) for i in pick]))  # fmt: skip
    return val, groups


def _window_cutter(tok: np.ndarray, val: np.ndarray, token_ids: np.ndarray, ctx_len: int, w: int):
    def cut(ctx: int, max_tok: int) -> tuple[np.ndarray, np.ndarray]:
        pos = int(max_tok) - int(ctx) * ctx_len
        start = int(ctx) * ctx_len + min(max(pos - (w - w // 4), 0), ctx_len - w)
        acts_W = np.zeros(w, dtype=np.float32)
        a, b = np.searchsorted(tok, [start, start + w])
        acts_W[tok[a:b] - start] = val[a:b]
        return np.asarray(token_ids[start : start + w]).astype(np.int64), acts_W

    return cut


# ----------------------------------------------------------------------------- logit lens


def decoder_logits(
    point: Point, latents: Sequence[int], k: int, model_cache: dict
) -> dict[int, Any]:
    """Latent -> (promoted [(token, logit)], suppressed [...]) from its decoder direction."""
    import torch

    from interp.sae import load_sae

    if not latents:
        return {}
    sae = load_sae(point.paths.sae_dir())
    idx = torch.as_tensor(list(latents))
    with torch.no_grad():
        d_LD = sae.W_dec.detach()[idx].float()
        W_U, gain_H, center, to_residual = _unembedding(point, d_LD.shape[1], model_cache)
        d_LH = d_LD @ to_residual.T if to_residual is not None else d_LD
        if center:
            d_LH = d_LH - d_LH.mean(dim=1, keepdim=True)
        logits_LV = (d_LH * gain_H) @ W_U.T
        top = torch.topk(logits_LV, k, dim=1)
        bottom = torch.topk(-logits_LV, k, dim=1)
    tok = model_cache[point.cfg.model.name]["tokenizer"]
    out = {}
    for row, latent in enumerate(latents):
        out[latent] = (
            [(tok.decode([int(t)]), float(v)) for t, v in zip(top.indices[row], top.values[row])],
            [(tok.decode([int(t)]), -float(v)) for t, v in zip(bottom.indices[row], bottom.values[row])],
        )  # fmt: skip
    return out


def _unembedding(point: Point, width: int, cache: dict) -> tuple[Any, Any, bool, Any]:
    """(W_U [V, H], gain [H], centre?, map [H, width] or None) of the point's subject model."""
    import torch

    from interp.models.load import load_causal_lm, load_tokenizer

    name = point.cfg.model.name
    if name not in cache:
        model = load_causal_lm(name, "float32", "cpu")
        norm = _final_norm(model)
        W_U = model.get_output_embeddings().weight.detach()
        hidden = W_U.shape[1]
        gain = getattr(norm, "weight", None)
        cache[name] = {
            "model": model,
            "W_U": W_U,
            "gain": gain.detach() if gain is not None else torch.ones(hidden),
            "center": norm is not None and "rms" not in type(norm).__name__.lower(),
            "tokenizer": load_tokenizer(name),
        }
    c = cache[name]
    to_residual = None
    if width != c["W_U"].shape[1]:
        to_residual = _input_projection(c["model"], point.cfg.hookpoint, width, c["W_U"].shape[1])
    return c["W_U"], c["gain"], c["center"], to_residual


def _final_norm(model: Any) -> Any:
    for path in (
        "model.norm",
        "transformer.ln_f",
        "gpt_neox.final_layer_norm",
        "model.decoder.final_layer_norm",
    ):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def _input_projection(model: Any, hookpoint: str, width: int, hidden: int) -> Any:
    """Weight [hidden, width] of the Linear whose input is the hookpoint, if it writes the
    residual stream (e.g. ``layers.3.mlp.down_proj:input``); else a clear error."""
    import torch

    module = None
    if hookpoint.endswith(":input"):
        base = model.base_model if hasattr(model, "base_model") else model
        try:
            module = base.get_submodule(hookpoint.removesuffix(":input"))
        except AttributeError:
            module = None
    if isinstance(module, torch.nn.Linear) and module.weight.shape == (hidden, width):
        return module.weight.detach().float()
    raise ValueError(
        f"decoder width {width} is not the residual width {hidden} and hookpoint "
        f"{hookpoint!r} is not the input of a Linear into the residual stream: no token lists"
    )


# ----------------------------------------------------------------------------- pages


def write_dashboards(
    points: Sequence[Point],
    table: LatentTable,
    alignments: Sequence[Alignment] | None,
    out: Path,
    cfg: DashboardConfig,
) -> Path:
    """Pages for the selected latents of every point and ``out/index.html``; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    plan = {p.point_id: select_latents(table, table.point_mask(p), cfg) for p in points}
    latent_col = table.number("latent")
    pages = {(pid, int(latent_col[r])) for pid, rows in plan.items() for r in rows}
    scorers = table.scorers("scores")
    entries, models = [], {}
    for point in points:
        rows = plan[point.point_id]
        latents = [int(latent_col[r]) for r in rows]
        notes, store, logits = [], None, {}
        try:
            store = _Store(point)
        except Exception as err:
            notes.append(
                f"no examples: the latent store could not be read ({type(err).__name__}: {err})"
            )
        try:
            logits = decoder_logits(point, latents, cfg.n_logit_tokens, models)
        except Exception as err:
            notes.append(f"no promoted/suppressed tokens: {type(err).__name__}: {err}")
        partners = _partners(point, set(latents), alignments, points)
        for r, why in tqdm(sorted(rows.items()), desc=f"dashboards {point.label}", unit="latent"):
            latent = int(latent_col[r])
            page = LatentPage(point, latent, table, r, why, cfg)
            body = page.render(store, logits.get(latent), partners.get(latent, []), pages, notes)
            path = out / point.point_id / f"{latent}.html"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
            entries.append(_index_entry(point, latent, table, r, why, scorers))
    index = out / "index.html"
    index.write_text(index_page(entries, scorers), encoding="utf-8")
    return index


def _partners(
    point: Point,
    wanted: set[int],
    alignments: Sequence[Alignment] | None,
    points: Sequence[Point],
) -> dict[int, list[tuple[str, str, int, float]]]:
    """Latent of ``wanted`` -> [(partner point id, partner label, partner latent, similarity)]."""
    out: dict[int, list[tuple[str, str, int, float]]] = {}
    labels = {p.point_id: p.label for p in points}
    for a in alignments or []:
        if point.point_id not in (a.a, a.b) or (found := a.matches()) is None:
            continue
        i, j, sim = found
        mine, theirs, other = (i, j, a.b) if a.a == point.point_id else (j, i, a.a)
        keep = np.isin(mine, list(wanted))
        for x, y, c in zip(mine[keep].tolist(), theirs[keep].tolist(), sim[keep].tolist()):
            out.setdefault(int(x), []).append((other, labels.get(other, other), int(y), float(c)))
    return out


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
        self, store: _Store | None, logits: Any, partners: list, pages: set, notes: list[str]
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
        return _page(title, "".join(parts))

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
        rows = [[scorer, SOURCE_LABELS.get(source, source), *(_num(d.get(m)) for m in metrics)]
                for (scorer, source), d in sorted(by.items())]  # fmt: skip
        cost = [(k, t.number(k)[r]) for k in ("prompt_tokens", "completion_tokens",
                                               "prompt_tokens_computed", "retries", "wall_s")]  # fmt: skip
        cost_s = ", ".join(f"{k.replace('_', ' ')} {_num(v)}" for k, v in cost if np.isfinite(v))
        body = _table(["scorer", "explanation", *metrics], rows) if rows else \
            '<p class="missing">no scores (the latent was not scored)</p>'  # fmt: skip
        return body + f"<p>LLM cost: {html.escape(cost_s or 'n/a')}</p>" + self._cost_parts()

    def _cost_parts(self) -> str:
        """Tokens per step (``tokens.parts.<step>.<kind>`` columns: explain, score, control)."""
        parts: dict[str, dict[str, str]] = {}
        for name, col in self.table.columns.items():
            bits = name.split(".")
            step = len(bits) == 4 and bits[:2] == ["tokens", "parts"] and col.dtype != object
            if step and np.isfinite(col[self.row]):
                parts.setdefault(bits[2], {})[bits[3]] = _num(col[self.row])
        if not parts:
            return ""
        kinds = sorted({k for d in parts.values() for k in d})
        rows = [[step, *(d.get(k, "") for k in kinds)] for step, d in sorted(parts.items())]
        return _table(["step", *(f"{k} tokens" for k in kinds)], rows)

    def _firing(self, store: _Store | None) -> str:
        t, r = self.table, self.row
        n = t.number("n_active_tokens")[r]
        freq = f" ({n / store.reader.n_tokens:.2e} of {store.reader.n_tokens} tokens)" \
            if store is not None and np.isfinite(n) and store.reader.n_tokens else ""  # fmt: skip
        items = [f"active tokens: {_num(n)}{freq}",
                 f"activating contexts: {_num(t.number('n_active_contexts')[r])}",
                 f"max activation: {_num(t.number('max_act')[r])}"]  # fmt: skip
        return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def _example_group(name: str, windows: list, store: _Store) -> str:
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


# ----------------------------------------------------------------------------- index


def _index_entry(
    point: Point, latent: int, table: LatentTable, row: int, why: str, scorers: list[str]
) -> dict[str, Any]:
    entry = {
        "href": f"{point.point_id}/{latent}.html",
        "dictionary": point.cfg.sae.sae_id,
        "layer": point.layer,
        "latent": latent,
        "chosen": why,
        "status": _clean(table.text("status")[row]),
        "explanation": _clean(table.text("explanation")[row]),
        "n_active_tokens": _clean(table.number("n_active_tokens")[row]),
    }
    for s in scorers:
        entry[s] = _clean(table.score(s)[row])
    return entry


def index_page(entries: list[dict[str, Any]], scorers: list[str]) -> str:
    """The searchable, sortable table of every latent page (data as escaped JSON)."""
    columns = ["dictionary", "layer", "latent", "chosen", "status", *scorers,
               "n_active_tokens", "explanation"]  # fmt: skip
    data = script_json({"columns": columns, "rows": entries})
    head = "".join(f'<th data-col="{html.escape(c)}">{html.escape(c)}</th>' for c in columns)
    body = (
        '<h1>Latent dashboards</h1><p><input id="q" type="search" placeholder="search '
        'explanations, dictionaries, status..." size="50"> <span id="count"></span></p>'
        f'<table id="latents"><thead><tr>{head}</tr></thead><tbody></tbody></table>'
        f'<script type="application/json" id="data">{data}</script><script>{INDEX_JS}</script>'
    )
    return _page("Latent dashboards", body)


def script_json(obj: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>', '&' or line separators survive."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(ch, esc)
    return text


INDEX_JS = """
(function () {
  var data = JSON.parse(document.getElementById('data').textContent);
  var cols = data.columns, rows = data.rows, sortCol = null, sortDir = 1;
  var tbody = document.querySelector('#latents tbody'), q = document.getElementById('q');
  function cell(row, c) {
    var td = document.createElement('td'), v = row[c];
    if (c === 'latent') {
      var a = document.createElement('a'); a.href = row.href; a.textContent = String(v);
      td.appendChild(a);
    } else {
      td.textContent = v === null || v === undefined ? '' :
        (typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(3) : String(v));
    }
    return td;
  }
  function cmp(a, b) {
    var x = a[sortCol], y = b[sortCol];
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    if (typeof x === 'number' && typeof y === 'number') return (x - y) * sortDir;
    return String(x).localeCompare(String(y)) * sortDir;
  }
  function render() {
    var needle = q.value.toLowerCase(), shown = rows.filter(function (r) {
      return !needle || cols.some(function (c) {
        return r[c] !== null && String(r[c]).toLowerCase().indexOf(needle) >= 0;
      });
    });
    if (sortCol !== null) shown.sort(cmp);
    tbody.textContent = '';
    shown.forEach(function (r) {
      var tr = document.createElement('tr');
      cols.forEach(function (c) { tr.appendChild(cell(r, c)); });
      tbody.appendChild(tr);
    });
    document.getElementById('count').textContent = shown.length + ' of ' + rows.length + ' latents';
  }
  document.querySelectorAll('#latents th').forEach(function (th) {
    th.addEventListener('click', function () {
      var c = th.getAttribute('data-col');
      sortDir = sortCol === c ? -sortDir : (typeof rows[0] === 'object' &&
        typeof rows[0][c] === 'number' ? -1 : 1);
      sortCol = c;
      document.querySelectorAll('#latents th').forEach(function (h) { h.className = ''; });
      th.className = sortDir > 0 ? 'asc' : 'desc';
      render();
    });
  });
  q.addEventListener('input', render);
  render();
})();
"""

PAGE_CSS = """
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


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f'</title><link rel="icon" href="data:,"><style>{PAGE_CSS}</style></head>'
        f"<body>{body}</body></html>"
    )


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    tb = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                 for row in rows)  # fmt: skip
    return f"<table><thead><tr>{th}</tr></thead><tbody>{tb}</tbody></table>"


def _num(v: Any) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{int(v)}" if float(v).is_integer() else f"{v:.3f}"


def _clean(v: Any) -> Any:
    """A JSON-able scalar (NaN -> None, numpy -> Python)."""
    if v is None:
        return None
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return (int(f) if f.is_integer() else round(f, 4)) if np.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    return str(v)
