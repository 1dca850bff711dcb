"""Which latents fire together with a latent: a sparse, token-major view built once per task.

The store is latent-major (CSR per latent range), so "who else fires at these tokens"
needs a transpose. :class:`CooccurrenceIndex` builds it for only the tokens that will be
asked about: for every latent the task will query, up to ``max_tokens`` of its active
tokens (evenly spaced over the corpus, so deterministic per latent). One pass over the
store's latent ranges keeps the entries at those tokens, then sorts them by token.

Cost, for a store of ``L`` latents and ``nnz`` entries, a task of ``R`` latents, ``M =
max_tokens`` and ``k`` active latents per token (TopK):

- build: one sequential read of every entry (``nnz``, chunked by ``chunk_latents``
  latents, so peak memory is one chunk), a bitmask of ``max token / 8`` bytes, and the
  kept view of ``<= R * M * k`` entries (4 bytes each; R=1024, M=256, k=32: ~34 MB),
  plus ``exemplars`` (token, value) pairs per latent (L=131k, J=32: ~25 MB).
  Never an ``L x L`` matrix.
- query: ``O(M * k)`` (gather the rows of the latent's sampled tokens, count ids).

Co-firing strength is the Jaccard index of the two latents' active-token sets, with the
intersection estimated from the sample: ``c_hat = c * n_A / |sample|`` and ``J = c_hat /
(n_A + n_B - c_hat)``; it ranks a latent that fires everywhere below a specific partner.
Each latent's *exemplars* are ``exemplars`` of its entries, evenly spaced in token
order: the contexts where a neighbour fires, from which hard negatives are cut.

Legend: ``T`` indexed tokens, ``E`` entries at them, ``L`` latents, ``J`` exemplars.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np
from tqdm import tqdm

if TYPE_CHECKING:  # the store package imports zarr; only its CSR type is used here
    from interp.store.csr import LatentCSR

log = logging.getLogger(__name__)

NO_TOKEN = np.iinfo(np.uint32).max  # padding of the exemplar table


class LatentRangeSource(Protocol):
    """What the index reads: ``interp.store.StoreReader`` satisfies it."""

    @property
    def n_latents(self) -> int: ...

    def latent_range(self, a: int, b: int) -> LatentCSR: ...


class Cofiring(NamedTuple):
    """Latents that fire with a latent, strongest co-firing first."""

    latent: np.ndarray  # [m] int64 latent ids (never the queried latent)
    jaccard: np.ndarray  # [m] float64 estimated Jaccard index of the active-token sets
    count: np.ndarray  # [m] int64 shared tokens among the queried latent's sample


def sample_tokens(tok: np.ndarray, max_tokens: int) -> np.ndarray:
    """Up to ``max_tokens`` of a latent's active tokens, evenly spaced (no randomness)."""
    tok = np.asarray(tok)
    n = len(tok)
    if n <= max_tokens:
        return tok.astype(np.int64)
    return tok[(np.arange(max_tokens, dtype=np.int64) * n) // max_tokens].astype(np.int64)


class CooccurrenceIndex:
    """Token-major entries at a set of tokens, per-latent counts and exemplars."""

    def __init__(
        self,
        tokens_T: np.ndarray,
        offsets_T1: np.ndarray,
        latents_E: np.ndarray,
        count_L: np.ndarray,
        ex_tok_LJ: np.ndarray,
        ex_val_LJ: np.ndarray,
        max_tokens: int,
    ) -> None:
        self.tokens_T = tokens_T  # int64 ascending global token indices
        self.offsets_T1 = offsets_T1  # int64: token t owns latents_E[offsets[t]:offsets[t+1]]
        self.latents_E = latents_E  # int32/int64 latent ids
        self.count_L = count_L  # int64 active tokens of every latent
        self.ex_tok_LJ = ex_tok_LJ  # uint32 exemplar tokens (NO_TOKEN = none)
        self.ex_val_LJ = ex_val_LJ  # float16 exemplar activations
        self.max_tokens = max_tokens

    @property
    def n_latents(self) -> int:
        return len(self.count_L)

    @property
    def nbytes(self) -> int:
        parts = (self.tokens_T, self.offsets_T1, self.latents_E, self.count_L)
        return sum(a.nbytes for a in parts) + self.ex_tok_LJ.nbytes + self.ex_val_LJ.nbytes

    @classmethod
    def build(
        cls,
        source: LatentRangeSource,
        queried: Iterable[np.ndarray],
        max_tokens: int = 256,
        exemplars: int = 32,
        chunk_latents: int = 1024,
    ) -> CooccurrenceIndex:
        """Index the store ``source`` at the sampled tokens of every latent in ``queried``.

        ``queried`` holds the active-token arrays (``LatentActs.tok``) of the latents
        that will be asked about, e.g. every latent of an interpret task's range.
        """
        if max_tokens < 1 or exemplars < 1 or chunk_latents < 1:
            raise ValueError("max_tokens, exemplars and chunk_latents must be >= 1")
        needed = np.unique(
            np.concatenate([sample_tokens(t, max_tokens) for t in queried] + [np.zeros(0, int)])
        )
        bits = _bitmask(needed)
        n_latents = source.n_latents
        id_dtype = np.int32 if n_latents < 2**31 else np.int64
        count_L = np.zeros(n_latents, np.int64)
        ex_tok = np.full((n_latents, exemplars), NO_TOKEN, np.uint32)
        ex_val = np.zeros((n_latents, exemplars), np.float16)
        kept_tok, kept_lat = [], []
        starts = range(0, n_latents, chunk_latents)
        for a in tqdm(starts, desc="co-occurrence index", unit="chunk", leave=False):
            b = min(a + chunk_latents, n_latents)
            csr = source.latent_range(a, b)
            counts = np.diff(csr.offsets)
            count_L[a:b] = counts
            _fill_exemplars(csr, counts, ex_tok[a:b], ex_val[a:b])
            hit = np.flatnonzero(_in_bitmask(bits, csr.tok))
            kept_tok.append(csr.tok[hit])  # uint32, as stored
            owner = np.searchsorted(csr.offsets, hit, side="right") - 1  # latent of each hit
            kept_lat.append((owner + a).astype(id_dtype))
        tok = np.concatenate(kept_tok + [np.zeros(0, np.uint32)])
        lat = np.concatenate(kept_lat + [np.zeros(0, id_dtype)])
        del kept_tok, kept_lat
        order = np.argsort(tok, kind="stable")
        lat = lat[order]
        tok = tok[order]
        del order
        tokens_T, first = np.unique(tok, return_index=True)
        offsets = np.append(first, len(tok)).astype(np.int64)
        n_entries = len(tok)
        del tok
        index = cls(tokens_T.astype(np.int64), offsets, lat, count_L, ex_tok, ex_val, max_tokens)
        log.info(
            "co-occurrence index: %d tokens, %d entries, %d latents, %.1f MB",
            len(tokens_T), n_entries, n_latents, index.nbytes / 2**20,
        )  # fmt: skip
        return index

    def cofiring(self, latent: int, tok: np.ndarray, top: int | None = None) -> Cofiring:
        """Latents that fire at ``latent``'s active tokens ``tok``, by estimated Jaccard."""
        sample = sample_tokens(tok, self.max_tokens)
        rows = np.searchsorted(self.tokens_T, sample)
        found = rows < len(self.tokens_T)
        found[found] = self.tokens_T[rows[found]] == sample[found]
        if not found.all():
            raise ValueError(
                f"latent {latent}: {int((~found).sum())} of its sampled tokens are not in this "
                "co-occurrence index; build the index with this latent's tokens among `queried`"
            )
        lo, hi = self.offsets_T1[rows], self.offsets_T1[rows + 1]
        ids = self.latents_E[_ranges(lo, hi)]
        ids = ids[ids != latent]
        other, count = np.unique(ids, return_counts=True)
        n_a = len(tok)
        shared = count * (n_a / max(len(sample), 1))
        jaccard = shared / np.maximum(n_a + self.count_L[other] - shared, 1e-12)
        order = np.lexsort((other, -jaccard))[:top]
        return Cofiring(
            other[order].astype(np.int64), jaccard[order], count[order].astype(np.int64)
        )

    def exemplars(self, latent: int) -> tuple[np.ndarray, np.ndarray]:
        """[j] global tokens (int64) and [j] activations (float32) where ``latent`` fires."""
        keep = self.ex_tok_LJ[latent] != NO_TOKEN
        return (
            self.ex_tok_LJ[latent][keep].astype(np.int64),
            self.ex_val_LJ[latent][keep].astype(np.float32),
        )


def _bitmask(tokens: np.ndarray) -> np.ndarray:
    """[ceil((max+1)/8)] uint8 with bit t set for every t in ``tokens``."""
    size = int(tokens.max()) + 1 if len(tokens) else 0
    bits = np.zeros((size + 7) // 8, np.uint8)
    np.bitwise_or.at(bits, tokens >> 3, (1 << (tokens & 7)).astype(np.uint8))
    return bits


def _in_bitmask(bits: np.ndarray, tok: np.ndarray) -> np.ndarray:
    """[n] bool: is each token's bit set (tokens past the mask are not). ``tok`` stays
    in its (uint32) dtype: no int64 copy of a chunk of the store."""
    if len(bits) == 0:
        return np.zeros(len(tok), bool)
    byte = tok >> 3
    inside = byte < len(bits)
    byte = np.where(inside, byte, 0)
    return inside & ((bits[byte] >> (tok & 7).astype(np.uint8)) & 1).astype(bool)


def _fill_exemplars(
    csr: LatentCSR, counts: np.ndarray, ex_tok: np.ndarray, ex_val: np.ndarray
) -> None:
    """Up to J entries per latent of the chunk, evenly spaced in token order."""
    j = ex_tok.shape[1]
    m = np.minimum(counts, j)  # exemplars of each latent
    slot = np.arange(j)[None, :]
    valid = slot < m[:, None]
    pos = csr.offsets[:-1, None] + (slot * counts[:, None]) // np.maximum(m, 1)[:, None]
    ex_tok[valid] = csr.tok[pos[valid]]
    ex_val[valid] = csr.val[pos[valid]]


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(lo[i], hi[i])`` for every i, vectorised."""
    lens = hi - lo
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    shift = np.repeat(lo - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return shift + np.arange(total)


def index_for_range(
    source: LatentRangeSource,
    csr: LatentCSR,
    max_tokens: int,
    exemplars: int = 32,
    chunk_latents: int = 1024,
) -> CooccurrenceIndex:
    """The index an interpret task needs: queried tokens = every latent of its range ``csr``."""
    queried: Sequence[np.ndarray] = [csr.latent(i).tok for i in range(csr.num_latents)]
    return CooccurrenceIndex.build(source, queried, max_tokens, exemplars, chunk_latents)
