"""Errors an LLM backend raises that its callers act on (any backend may raise them).

:class:`LLMUnavailableError` is the one the interpret stage treats as transient: the
range stops uncommitted and a rerun redoes it, nothing is recorded for the latent. The
others describe a reply or request that will not get better by retrying; the raw body
goes on the latent's record.
"""

from __future__ import annotations

__all__ = ["LLMHTTPError", "LLMResponseError", "LLMUnavailableError"]


class LLMHTTPError(RuntimeError):
    """The server refused the request for a reason retrying cannot fix (4xx, not 429)."""

    def __init__(self, message: str, status: int, raw: str) -> None:
        super().__init__(message)
        self.status = status
        self.raw = raw


class LLMResponseError(RuntimeError):
    """The server kept answering with something unusable; ``raw`` is its last body."""

    def __init__(self, message: str, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


class LLMUnavailableError(RuntimeError):
    """No replica answered usably (timeouts, refused connections, 429/5xx) within the
    retries: transient, so the work is redone later, never recorded as the latent's
    result. ``raw`` is the last error body a server sent ("" if none)."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw
