"""Matplotlib figures of a sweep, as PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, never
``pyplot``: no global state, no backend chosen at import, safe in a batch job without a
display. Every function takes plain data (lists, dicts, numpy arrays) and returns PNG
bytes, so the report decides where the image goes; a function given nothing to draw
returns None and the report says what is missing.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

MARKERS = "osD^vP*Xh<>"
DPI = 110


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _finite(values: Sequence[Any]) -> np.ndarray:
    arr = np.array([np.nan if v is None else v for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def reconstruction_vs_sparsity(points: Sequence[Mapping[str, Any]]) -> bytes | None:
    """FVU vs L0 and CE-loss increase vs L0, one marker per point.

    ``points``: dicts with ``label`` (series: architecture, or run/architecture when
    comparing), ``layer``, ``l0``, ``fvu``, ``ce_increase`` (None where not measured).
    Colour = series, text next to each marker = layer. None if no point has an L0.
    """
    pts = [p for p in points if p.get("l0") is not None]
    if not pts:
        return None
    series = sorted({str(p["label"]) for p in pts})
    colors = dict(zip(series, _colors(len(series))))
    markers = {s: MARKERS[i % len(MARKERS)] for i, s in enumerate(series)}
    fig = _figure(10, 4)
    for ax, key, title in zip(
        fig.subplots(1, 2),
        ("fvu", "ce_increase"),
        ("fraction of variance unexplained", "CE-loss increase (nats)"),
    ):
        for s in series:
            sel = [p for p in pts if str(p["label"]) == s and p.get(key) is not None]
            if not sel:
                continue
            x = [float(p["l0"]) for p in sel]
            y = [float(p[key]) for p in sel]
            ax.scatter(x, y, color=colors[s], marker=markers[s], label=s, s=40)
            for p, xi, yi in zip(sel, x, y):
                ax.annotate(f"L{p['layer']}", (xi, yi), textcoords="offset points",
                            xytext=(4, 3), fontsize=8)  # fmt: skip
        ax.set_xlabel("L0 (active latents per token)")
        ax.set_ylabel(title)
        ax.set_title(f"{title} vs L0", fontsize=10)
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    return _png(fig)


def dead_fraction(points: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Dead-latent percentage per layer (x) and series (bars). None if none measured.

    ``points``: dicts with ``label``, ``layer`` and ``dead_pct`` (None for built, not
    trained, dictionaries such as neurons).
    """
    pts = [p for p in points if p.get("dead_pct") is not None]
    if not pts:
        return None
    series = sorted({str(p["label"]) for p in pts})
    layers = sorted({int(p["layer"]) for p in pts})
    width = 0.8 / len(series)
    fig = _figure(max(5, 1.2 * len(layers) + 3), 3.5)
    ax = fig.subplots()
    for i, (s, color) in enumerate(zip(series, _colors(len(series)))):
        vals = {int(p["layer"]): float(p["dead_pct"]) for p in pts if str(p["label"]) == s}
        xs = [j + i * width for j, layer in enumerate(layers) if layer in vals]
        ax.bar(xs, [vals[layer] for layer in layers if layer in vals], width, label=s, color=color)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(layers))], [f"layer {x}" for x in layers])
    ax.set_ylabel("dead latents (%)")
    ax.set_title("dead latents (never fired during training's last window)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def score_distributions(
    groups: Mapping[str, Mapping[str, Sequence[float | None]]], metric_of: Mapping[str, str]
) -> bytes | None:
    """One panel per scorer: box plots of its score over groups of latents.

    ``groups``: scorer -> group name ("SAE latents", "neurons", "random-explanation
    control", ...) -> per-latent scores (None/NaN skipped). ``metric_of``: scorer -> the
    metric's name, for the axis label. Empty groups are left out; None if nothing to draw.
    """
    panels = {
        scorer: {g: v for g, vals in by_group.items() if len(v := _finite(vals))}
        for scorer, by_group in groups.items()
    }
    panels = {s: g for s, g in panels.items() if g}
    if not panels:
        return None
    names = sorted({g for by_group in panels.values() for g in by_group})
    colors = dict(zip(names, _colors(len(names))))
    fig = _figure(max(4.0, 3.2 * len(panels)), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (scorer, by_group) in zip(axes, sorted(panels.items())):
        labels = list(by_group)
        box = ax.boxplot([by_group[g] for g in labels], patch_artist=True, widths=0.6)
        for patch, g in zip(box["boxes"], labels):
            patch.set_facecolor(colors[g])
            patch.set_alpha(0.6)
        ax.set_xticks(range(1, len(labels) + 1),
                      [f"{g}\n(n={len(by_group[g])})" for g in labels], fontsize=7)  # fmt: skip
        ax.set_title(scorer, fontsize=10)
        ax.set_ylabel(metric_of.get(scorer, "score"), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def correlation_heatmap(names: Sequence[str], corr_SS: np.ndarray, title: str) -> bytes | None:
    """Heatmap of a symmetric [S, S] correlation matrix (NaN cells blank, values written)."""
    if len(names) < 2:
        return None
    return _heatmap(list(names), list(names), corr_SS, title, vmin=-1, vmax=1, cmap="RdBu_r")


def alignment_heatmap(
    row_labels: Sequence[str], col_labels: Sequence[str], value_RC: np.ndarray, title: str
) -> bytes | None:
    """Heatmap of a [R, C] alignment summary (e.g. mean matched decoder cosine between the
    dictionaries of two layers); NaN = pair not aligned."""
    if not len(row_labels) or not len(col_labels) or not np.isfinite(value_RC).any():
        return None
    return _heatmap(list(row_labels), list(col_labels), value_RC, title, 0, 1, "viridis")


def _heatmap(
    rows: list[str], cols: list[str], value_RC: np.ndarray, title: str,
    vmin: float, vmax: float, cmap: str,
) -> bytes:  # fmt: skip
    value_RC = np.asarray(value_RC, dtype=float)
    fig = _figure(max(5.5, 2.5 + 0.9 * len(cols)), max(3.0, 1.8 + 0.6 * len(rows)))
    ax = fig.subplots()
    im = ax.imshow(np.ma.masked_invalid(value_RC), vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for (i, j), v in np.ndenumerate(value_RC):
        if np.isfinite(v):
            dark = (v - vmin) / (vmax - vmin)
            color = "white" if (cmap == "viridis" and dark < 0.6) or abs(v) > 0.75 else "black"
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color=color)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def training_curves(curves: Mapping[str, Sequence[Mapping[str, Any]]], key: str) -> bytes | None:
    """``key`` (e.g. "fvu") against training tokens for each point's ``metrics.jsonl`` rows.

    ``curves``: label -> rows with ``tokens`` (or ``step``) and ``key``. None if no row has it.
    """
    fig = _figure(6, 3.5)
    ax = fig.subplots()
    drawn = 0
    for (label, rows), color in zip(sorted(curves.items()), _colors(len(curves))):
        pts = [(r.get("tokens", r.get("step")), r.get(key)) for r in rows]
        pts = [(x, y) for x, y in pts if x is not None and isinstance(y, (int, float))]
        if pts:
            ax.plot(*zip(*pts), label=label, color=color, lw=1.2)
            drawn += 1
    if not drawn:
        return None
    ax.set_xlabel("training tokens")
    ax.set_ylabel(key)
    ax.set_yscale("log")
    ax.set_title(f"{key} during training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)
