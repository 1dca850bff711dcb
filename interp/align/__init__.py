"""Hungarian alignment of dictionaries: decoder-cosine or activation-correlation matching,
dense (reference) or sparse (candidate graph, 131k x 131k on CPU), its report, and the
alignment of a whole sweep.

    align(a, b, cfg)          two dictionaries -> Alignment (interp.align.align)
    align_dictionaries(root, dicts)  every layer / architecture pair of a sweep's
                                     dictionaries (interp.align.sweep; the gather job's
                                     interp.stages.align.align_sweep(root) reads them)

Names are imported lazily: importing the package loads nothing.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr

_EXPORTS = {
    "AlignConfig": "interp.align.align",
    "Alignment": "interp.align.align",
    "align": "interp.align.align",
    "cross_score_pairs": "interp.align.report",
    "explanation_similarity": "interp.align.report",
    "random_baseline": "interp.align.align",
    "summarize": "interp.align.report",
    "CandidateGraph": "interp.align.candidates",
    "decoder_candidates": "interp.align.candidates",
    "activation_candidates": "interp.align.candidates",
    "Matching": "interp.align.match",
    "dense_match": "interp.align.match",
    "sparse_match": "interp.align.match",
    "align_dir": "interp.align.sweep",
    "align_dictionaries": "interp.align.sweep",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
