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

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from interp.report.dash_examples import Store, latent_examples
from interp.report.dash_index import index_entry, index_page
from interp.report.htmlkit import script_json
from interp.report.latent_page import LatentPage, histogram_svg
from interp.report.logit_lens import decoder_logits
from interp.report.sweepdata import Alignment, LatentTable, Point

__all__ = [
    "DashboardConfig",
    "LatentPage",
    "decoder_logits",
    "histogram_svg",
    "index_page",
    "latent_examples",
    "script_json",
    "select_latents",
    "write_dashboards",
]

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
            store = Store(point)
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
            entries.append(index_entry(point, latent, table, r, why, scorers))
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
