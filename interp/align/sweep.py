"""Align the dictionaries of a finished sweep: layer to layer, architecture to architecture.

:func:`align_dictionaries` takes every sweep point's trained
or built dictionary, and aligns

* ``kind="layers"``: adjacent layers of one family (same model, dictionary id, training
  settings and hookpoint pattern, e.g. ``topk-x8-k32`` at layers 6 -> 12 -> 18);
* ``kind="same_layer"``: every two dictionaries at the same hookpoint (architectures,
  seeds, SAE vs neurons of that hookpoint);
* ``kind="neurons"``: a neuron dictionary and each SAE at the same layer but another
  hookpoint (e.g. MLP neurons vs residual SAE).

Decoder cosine is used when both decoders write into the same space (same width);
otherwise activation correlation from the two latent stores when they were collected over
the same tokens; otherwise the pair is recorded as skipped with the reason.

Output, under the sweep's gather folder (``<root>/gather/align/``)::

    index.json                 written last (the commit of the whole alignment):
                               {"config": AlignConfig fields, "pairs": [entry, ...]}
                               one entry per planned pair: name, kind, a, b (each:
                               point, sae_id, architecture, layer, hookpoint, num_latents),
                               status ("ok" | "skipped"), reason, similarity, method,
                               num_pairs, median, mean, frac_above {threshold: fraction},
                               baseline_median, baseline_frac_above,
                               explanation_similarity_mean, explanation_similarity_shuffled
    pairs/<name>/              one folder per aligned pair, renamed into place when done
                               (a rerun reuses it); <name> = <point a>_<point b>_<config hash>
      summary.json             interp.align.report.summarize() + a, b, kind, explanation stats
      matches.parquet          one row per matched pair: a, b (latent ids), similarity,
                               in_graph (False = paired by the leftover dense fill),
                               explanation_similarity (NaN unless both were explained)
      cross_score.parquet      the cross-scoring plan: target ("a" or "b"), latent (in the
                               target dictionary), source_latent (its match), explanation
                               (the match's), similarity

``frac_above`` counts matched pairs at or above each threshold over the width of the
smaller dictionary. The baseline is the matching of random unit vectors of the same
widths and dimension (computed once per shape per call). Heatmaps (architectures x
layers) read ``index.json`` only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from interp.align.align import AlignConfig, align, random_baseline
from interp.align.match import Matching
from interp.align.report import (
    Embedder,
    cross_score_pairs,
    explanation_similarity,
    matches_table,
    matching_config,
    summarize,
)
from interp.records import read_records
from interp.runs import atomic_dir, atomic_write_json, gather_dir, remove_stale_tmp, short_hash

log = logging.getLogger(__name__)


def align_dir(root: Path) -> Path:
    """Where :func:`align_dictionaries` writes (inside the sweep's gather folder)."""
    return gather_dir(root) / "align"


@dataclass(frozen=True)
class Dictionary:
    """One sweep point's dictionary, as alignment sees it: plain values the caller builds
    from the point (:func:`interp.stages.inputs.dictionary`)."""

    point: str
    model: str
    sae_id: str
    architecture: str
    layer: int
    hookpoint: str
    family: str
    """Equal for dictionaries that differ only in the layer (aligned layer to layer)."""
    tokens_key: str
    """Equal for two points whose stores hold the same tokens."""
    sae_dir: Path
    store_dir: Path
    records_dir: Path
    """The point's interpret records (``r*.jsonl``)."""

    @property
    def width(self) -> tuple[int, int]:
        """(num_latents, decoder output width) from cfg.json, without loading weights."""
        cfg = json.loads((self.sae_dir / "cfg.json").read_text())
        d_in = int(cfg["d_in"])
        return int(cfg.get("num_latents") or d_in * int(cfg["expansion_factor"])), int(
            cfg.get("d_out", d_in)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "point": self.point,
            "sae_id": self.sae_id,
            "architecture": self.architecture,
            "layer": self.layer,
            "hookpoint": self.hookpoint,
            "num_latents": self.width[0],
        }


@dataclass(frozen=True)
class PairPlan:
    kind: str
    a: Dictionary
    b: Dictionary


def plan_pairs(dicts: list[Dictionary]) -> list[PairPlan]:
    """Every pair :func:`align_dictionaries` aligns (see the module docstring), in a fixed
    order."""
    dicts = sorted(dicts, key=lambda d: (d.layer, d.hookpoint, d.sae_id, d.point))
    pairs: list[PairPlan] = []
    families: dict[str, list[Dictionary]] = {}
    for d in dicts:
        families.setdefault(d.family, []).append(d)
    for members in families.values():
        layers = sorted({d.layer for d in members})
        for lo, hi in zip(layers, layers[1:], strict=False):
            for a in (d for d in members if d.layer == lo):
                pairs.extend(PairPlan("layers", a, b) for b in members if b.layer == hi)
    for i, a in enumerate(dicts):
        for b in dicts[i + 1 :]:
            same_model = a.model == b.model
            if same_model and a.hookpoint == b.hookpoint:
                pairs.append(PairPlan("same_layer", a, b))
            elif (
                same_model and a.layer == b.layer and "neurons" in (a.architecture, b.architecture)
            ):
                pairs.append(PairPlan("neurons", a, b))
    return pairs


def read_explanations(records_dir: Path) -> dict[int, str]:
    """latent -> explanation of every explained latent of a point (empty when none)."""
    out: dict[int, str] = {}
    for file in sorted(records_dir.glob("r*.jsonl")):
        for rec in read_records(file):
            if rec.status == "ok" and rec.explanation:
                out[rec.latent] = rec.explanation
    return out


class _Baselines:
    """Random-direction baselines, one per (width a, width b, dimension)."""

    def __init__(self, cfg: AlignConfig) -> None:
        self.cfg = cfg
        self.done: dict[tuple[int, int, int], Matching] = {}

    def get(self, num_a: int, num_b: int, dim: int) -> Matching:
        key = (num_a, num_b, dim)
        if key not in self.done:
            log.info("random-direction baseline %d x %d in dimension %d", *key)
            self.done[key] = random_baseline(num_a, num_b, dim, self.cfg)
        return self.done[key]


class _LazyEmbedder:
    """Loads the sentence embedder on first use; None (with a warning) if it cannot."""

    def __init__(self, embedder: Embedder | None, enabled: bool) -> None:
        self.embedder, self.enabled, self.tried = embedder, enabled, embedder is not None

    def get(self) -> Embedder | None:
        if not self.tried and self.enabled:
            self.tried = True
            try:
                from interp.models.embedder import load_embedder

                self.embedder = load_embedder()
            except Exception as err:  # an optional report column must not fail the gather
                log.warning("no explanation similarity: the embedder did not load (%s)", err)
        return self.embedder


def align_dictionaries(
    root: Path,
    dicts: list[Dictionary],
    cfg: AlignConfig | None = None,
    *,
    embedder: Embedder | None = None,
    embed_explanations: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    progress: bool = False,
) -> Path | None:
    """Align every planned pair of ``dicts``, the dictionaries of the sweep in ``root``
    (:func:`interp.stages.align.align_sweep` reads them from it); returns ``index.json``'s path,
    or None when ``should_stop()`` interrupted it (finished pairs stay committed and are
    reused by the next call). ``embedder`` defaults to ``load_embedder()``, loaded only
    if some pair has explanations on both sides."""
    cfg = cfg or AlignConfig()
    root = Path(root)
    missing = [str(d.sae_dir) for d in dicts if not (d.sae_dir / "cfg.json").is_file()]
    if missing:
        raise FileNotFoundError(
            f"align needs every trained dictionary; missing: {missing}: run train first"
        )
    pairs = plan_pairs(dicts)
    # one gather job per sweep: temporaries here are leftovers of a killed attempt
    remove_stale_tmp(align_dir(root) / "pairs")
    log.info("aligning %d pair(s) of %d dictionaries under %s", len(pairs), len(dicts), root)
    ctx = _SweepContext(
        root, cfg, _Baselines(cfg), _LazyEmbedder(embedder, embed_explanations), progress
    )
    entries = []
    for plan in pairs:
        if should_stop():
            log.info(
                "stop requested: %d of %d pairs written, index.json not", len(entries), len(pairs)
            )
            return None
        entries.append(ctx.pair(plan))
    index = align_dir(root) / "index.json"
    atomic_write_json(index, {"config": matching_config(cfg), "pairs": entries})
    return index


@dataclass
class _SweepContext:
    root: Path
    cfg: AlignConfig
    baselines: _Baselines
    embedder: _LazyEmbedder
    progress: bool

    def pair(self, plan: PairPlan) -> dict[str, Any]:
        a, b = plan.a, plan.b
        name = f"{a.point}_{b.point}_{short_hash(matching_config(self.cfg), 6)}"
        entry: dict[str, Any] = {
            "name": name,
            "kind": plan.kind,
            "a": a.describe(),
            "b": b.describe(),
        }
        folder = align_dir(self.root) / "pairs" / name
        if (folder / "summary.json").is_file():
            log.info("pair %s already aligned: reusing it", name)
            return {**entry, **_headline(json.loads((folder / "summary.json").read_text()))}
        similarity, reason = self._similarity(a, b)
        if similarity is None:
            log.info("pair %s skipped: %s", name, reason)
            return {**entry, **_skipped(reason)}
        result = align(
            a.sae_dir,
            b.sae_dir,
            self.cfg,
            similarity=similarity,  # type: ignore[arg-type]
            acts_a=a.store_dir if similarity == "activation" else None,
            acts_b=b.store_dir if similarity == "activation" else None,
            progress=self.progress,
        )
        expl = (read_explanations(a.records_dir), read_explanations(b.records_dir))
        expl_sim, expl_stats = self._explanations(result.matching, expl)
        baseline = None
        if self.cfg.baseline and result.similarity == "decoder":
            baseline = self.baselines.get(a.width[0], b.width[0], a.width[1])
        summary = {**entry, **summarize(result, baseline, self.cfg), **expl_stats, "status": "ok"}
        _write_pair(folder, result.matching, summary, expl, expl_sim)
        return {**entry, **_headline(summary)}

    def _similarity(self, a: Dictionary, b: Dictionary) -> tuple[str | None, str]:
        if a.width[1] == b.width[1]:
            return "decoder", ""
        if a.tokens_key != b.tokens_key:
            return None, (
                f"decoders write into different spaces ({a.width[1]} vs {b.width[1]} wide) and "
                "the stores hold different tokens, so neither decoder cosine nor activation "
                "correlation applies"
            )
        return "activation", ""

    def _explanations(
        self, m: Matching, expl: tuple[dict[int, str], dict[int, str]]
    ) -> tuple[np.ndarray | None, dict[str, Any]]:
        stats: dict[str, Any] = {
            "explanation_pairs": 0,
            "explanation_similarity_mean": None,
            "explanation_similarity_shuffled": None,
        }
        if not (expl[0] and expl[1]) or (embedder := self.embedder.get()) is None:
            return None, stats
        sim, shuffled = explanation_similarity(m, *expl, embedder, seed=self.cfg.seed)
        finite = sim[np.isfinite(sim)]
        stats["explanation_pairs"] = int(len(finite))
        stats["explanation_similarity_mean"] = float(finite.mean()) if len(finite) else None
        stats["explanation_similarity_shuffled"] = shuffled
        return sim, stats


def _write_pair(
    folder: Path,
    m: Matching,
    summary: dict[str, Any],
    expl: tuple[dict[int, str], dict[int, str]],
    expl_sim: np.ndarray | None,
) -> None:
    """Commit one pair's folder: summary.json, matches.parquet, cross_score.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cross = [("b", p) for p in cross_score_pairs(m, expl[0])]
    flipped = Matching(m.b, m.a, m.sim, m.in_graph, m.num_b, m.num_a)
    cross += [("a", p) for p in cross_score_pairs(flipped, expl[1])]
    cross_table = pa.table(
        {
            "target": pa.array([t for t, _ in cross], pa.string()),
            "latent": pa.array([p.latent for _, p in cross], pa.int64()),
            "source_latent": pa.array([p.source_latent for _, p in cross], pa.int64()),
            "explanation": pa.array([p.explanation for _, p in cross], pa.string()),
            "similarity": pa.array([p.similarity for _, p in cross], pa.float32()),
        }
    )
    with atomic_dir(folder) as tmp:
        pq.write_table(pa.table(matches_table(m, expl_sim)), tmp / "matches.parquet")
        pq.write_table(cross_table, tmp / "cross_score.parquet")
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    log.info("wrote %s (%d pairs, %d cross-scoring items)", folder, len(m.a), len(cross))


HEADLINE_KEYS = (
    "status", "reason", "similarity", "method", "num_pairs", "median", "mean", "frac_above",
    "baseline_median", "baseline_frac_above", "explanation_similarity_mean",
    "explanation_similarity_shuffled",
)  # fmt: skip


def _skipped(reason: str) -> dict[str, Any]:
    return {**dict.fromkeys(HEADLINE_KEYS), "status": "skipped", "reason": reason}


def _headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The scalars of a pair's summary that index.json repeats (heatmaps need no more)."""
    matched, base = summary["matched"], summary.get("baseline") or {}
    return {
        "status": "ok",
        "reason": None,
        "similarity": summary["similarity"],
        "method": summary["method"],
        "num_pairs": summary["num_pairs"],
        "median": matched["quantiles"]["0.5"],
        "mean": matched["mean"],
        "frac_above": matched["frac_above"],
        "baseline_median": (base.get("quantiles") or {}).get("0.5"),
        "baseline_frac_above": base.get("frac_above"),
        "explanation_similarity_mean": summary["explanation_similarity_mean"],
        "explanation_similarity_shuffled": summary["explanation_similarity_shuffled"],
    }
