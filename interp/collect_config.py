"""The collection config (``collect.*`` keys of the run config): how latents are
collected into the store (token-slice array) and compacted (latent-range array).

It sits beside the store package rather than in it: importing ``interp.store.<module>``
runs ``interp/store/__init__.py``, which loads zarr and the run layout, and the config
must stay light to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from interp.typed import meta as _meta
from interp.typed import positive as _positive


@dataclass(frozen=True)
class CollectConfig:
    """Latent collection (token-slice array) and compaction (latent-range array)."""

    num_tokens: int = field(default=131_072, metadata=_meta("Tokens of the corpus to collect."))
    slice_tokens: int = field(
        default=65_536, metadata=_meta("Tokens per collect array task (one Zarr group each).")
    )
    range_latents: int = field(
        default=1024, metadata=_meta("Latents per compact array task (one shard each).")
    )
    lm_batch_size: int = field(default=16, metadata=_meta("Context windows per LM forward."))

    def __post_init__(self) -> None:
        _positive(self, "num_tokens", "slice_tokens", "range_latents", "lm_batch_size")
