"""Which latents a point interprets: ``interpret.latents``, parsed and checked at config time.

Forms (one string; on the Hydra command line quote a list: ``'interpret.latents="3,17,42"'``):

- ``all``: every latent of the dictionary (the same as ``interpret.num_latents=0``);
- ``A:B``: the range ``[A, B)`` (``0:N`` is ``interpret.num_latents=N``, the same run id);
- ``3,17,42``: these latents (sorted, duplicates dropped);
- ``file:<path>``: the ids in a file, one per line or a JSON list; the path is made absolute
  and the file's sha256 is appended (``file:<path>@<sha12>``), so a changed file is a new
  selection (a new run id) and a file changed after planning is refused at run time;
- ``sample:N``: a seeded random sample (``interpret.latents_seed``) of N *alive* latents;
- ``stratified:N``: N alive latents stratified by firing frequency (below).

*Alive* means the latent's active-token count in the compacted store (its per-latent
``count`` stat) is at least ``interpret.examples.min_examples``: a latent with fewer
active tokens has fewer activating contexts than the explainer needs. (Contexts are at
most tokens, so a sampled latent can still come out ``too_rare``; it is recorded so.)

**Stratified rule.** The alive latents' counts are binned in ``min(N, STRATA)`` bins of
equal width in log(count) between the rarest and the densest alive latent; each bin gets
an equal share of N, a bin with fewer latents than its share gives all it has and the rest
is shared out equally among the larger bins (water-filling, smallest bin first), and each
bin's latents are drawn without replacement. ``sample`` and ``stratified`` return the ids
sorted; with fewer alive latents than N they return every alive latent.

The plan knows the size of the selection without the store (N, the list's length, the
range's, the width), so the interpret array is split into ranges of *positions* in the
selection (``interpret.range_latents`` per task); every task resolves the same ordered
list at run time (:mod:`interp.interpret.select`) and takes its positions. For ``all``,
a range from 0 and ``num_latents``, positions are latent ids, exactly as before.

This module stays light (no numpy): :mod:`interp.interpret.config` imports it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

KEY = "interpret.latents"
STRATA = 8
"""Frequency bins of ``stratified:N`` (fewer when N is smaller)."""
FORMS = "all, A:B, a list '3,17,42', file:<path>, sample:N or stratified:N"
Mode = Literal["all", "range", "list", "file", "sample", "stratified"]
_SHA = re.compile(r"^(?P<path>.+)@(?P<sha>[0-9a-f]{12})$")


@dataclass(frozen=True)
class Selection:
    """A parsed ``interpret.latents``; ``ids`` of a list or file, ``n`` of a sample."""

    mode: Mode
    start: int = 0
    stop: int = 0
    ids: tuple[int, ...] = ()
    path: str = ""
    sha: str = ""
    n: int = 0

    @property
    def canonical(self) -> str:
        """The string the config keeps (equal selections, equal strings, equal ids)."""
        if self.mode == "all":
            return "all"
        if self.mode == "range":
            return f"{self.start}:{self.stop}"
        if self.mode == "list":
            return ",".join(map(str, self.ids)) + ("," if len(self.ids) == 1 else "")
        if self.mode == "file":
            return f"file:{self.path}@{self.sha}"
        return f"{self.mode}:{self.n}"

    @property
    def needs_store(self) -> bool:
        """Resolved from the store's per-latent counts (a sample), not from the config."""
        return self.mode in ("sample", "stratified")

    def size(self, width: int) -> int:
        """How many latents it selects from a dictionary of ``width`` (at most N for a
        sample: fewer when fewer are alive)."""
        if self.mode == "all":
            return width
        if self.mode == "range":
            return self.stop - self.start
        if self.mode in ("list", "file"):
            return len(self.ids)
        return min(self.n, width)

    def problem(self, width: int) -> str:
        """Why it does not fit a dictionary of ``width`` latents ('' if it does)."""
        top = self.stop if self.mode == "range" else max(self.ids, default=-1) + 1
        if top > width:
            what = f"range ends at {self.stop}" if self.mode == "range" else f"has id {top - 1}"
            return (
                f"{KEY}={self.canonical!r} {what}, beyond the dictionary's {width} latents "
                f"(ids 0..{width - 1}): select ids below {width}"
            )
        if self.needs_store and self.n > width:
            return (
                f"{KEY}={self.canonical!r} asks for {self.n} latents of a dictionary of "
                f"{width}: use N <= {width}, or {KEY}=all"
            )
        return ""


def parse(text: str) -> Selection:
    """Parse ``interpret.latents``; ``ValueError`` naming the key and the forms."""
    text = text.strip()
    if text == "all":
        return Selection("all")
    head, sep, rest = text.partition(":")
    if sep and head in ("sample", "stratified"):
        return Selection(head, n=_count(rest, text))  # type: ignore[arg-type]
    if sep and head == "file":
        return _parse_file(rest)
    if sep:
        return _parse_range(head, rest, text)
    return _parse_list(text)


def _bad(text: str, why: str) -> ValueError:
    return ValueError(f"{KEY}={text!r}: {why}; write one of {FORMS}")


def _int(part: str, text: str) -> int:
    try:
        value = int(part.strip())
    except ValueError:
        raise _bad(text, f"{part.strip()!r} is not a latent id") from None
    if value < 0:
        raise _bad(text, f"latent ids are >= 0, got {value}")
    return value


def _count(part: str, text: str) -> int:
    n = _int(part, text)
    if n <= 0:
        raise _bad(text, "a sample needs N >= 1")
    return n


def _parse_range(head: str, rest: str, text: str) -> Selection:
    start, stop = _int(head, text), _int(rest, text)
    if stop <= start:
        raise _bad(text, f"the range [{start}, {stop}) is empty (A < B needed)")
    return Selection("range", start=start, stop=stop)


def _parse_list(text: str) -> Selection:
    parts = [p for p in re.split(r"[,\s]+", text) if p]
    if not parts:
        raise _bad(text, "no latent ids")
    if len(parts) == 1 and "," not in text and not parts[0].isdigit():
        raise _bad(text, "not a selection")
    if len(parts) == 1 and "," not in text:
        raise _bad(
            text,
            f"a bare number is ambiguous: '0:{parts[0]}' for the first {parts[0]} latents, "
            f"'{parts[0]},' for latent {parts[0]} alone",
        )
    return Selection("list", ids=tuple(sorted({_int(p, text) for p in parts})))


def _parse_file(rest: str) -> Selection:
    m = _SHA.match(rest)
    path = Path(m.group("path") if m else rest).expanduser().resolve()
    ids, sha = read_id_file(path)
    if m and m.group("sha") != sha:
        raise ValueError(
            f"{KEY}: {path} changed since this point was planned (sha256 {sha}, planned "
            f"{m.group('sha')}): restore it, or submit again with {KEY}=file:{path} "
            "(a new selection)"
        )
    return Selection("file", ids=ids, path=str(path), sha=sha)


def read_id_file(path: Path) -> tuple[tuple[int, ...], str]:
    """(sorted unique ids, sha256[:12]) of an id file: one id per line, or a JSON list."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ValueError(
            f"{KEY}=file:{path}: cannot read it ({err.strerror}): give an existing file of "
            "latent ids (one per line, or a JSON list)"
        ) from None
    text = data.decode("utf-8", "replace").strip()
    where = f"file:{path}"
    if text.startswith("["):
        try:
            values = json.loads(text)
        except ValueError as err:
            raise _bad(where, f"not a JSON list ({err})") from None
        parts = [str(v) for v in values]
    else:
        parts = [ln.split("#")[0] for ln in text.splitlines() if ln.split("#")[0].strip()]
    if not parts:
        raise _bad(where, "the file holds no latent ids")
    ids = tuple(sorted({_int(p, where) for p in parts}))
    return ids, hashlib.sha256(data).hexdigest()[:12]
