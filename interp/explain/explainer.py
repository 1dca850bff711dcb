"""LLM explainers (default, contrastive, chain of thought): strict parsing, retries, failures kept.

delphi scores "Explanation could not be parsed." as if it were an explanation. Here a
reply without a usable ``Explanation:`` line (no marker, empty, rambling, or cut off by
the token cap) is re-asked up to ``cfg.max_retries`` times with a reminder, the reply
opened with the marker (a prefill, which even SmolLM2-135M follows); if every attempt
fails the latent is ``explain_failed``, every raw reply is kept, and nothing is scored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from interp.explain.config import ExplainerConfig
from interp.explain.prompts import REMINDER, TokenRenderer, explain_messages
from interp.latents.examples import Example
from interp.llm.base import LLMClient

MAX_CHARS = 200  # a longer "explanation" is a ramble or a list of examples
# The marker, unless quoted: a weak model echoing the instructions writes '"Explanation:"'.
_MARKER = re.compile(r"(?<![\"'“`])explanation\s*\**\s*[:：](?![\"'”`])", re.IGNORECASE)
_MARKER_ANY = re.compile(r"explanation\s*\**\s*[:：]", re.IGNORECASE)
PREFILL = "Explanation: The marked tokens are"  # the retry's reply starts with this
_MARKUP = re.compile(r"<<|>>|`|\*\*|__")  # inline markup; quotes inside are kept
_LEAD = re.compile(
    r"^(?:(?:all\s+)?(?:of\s+)?(?:the\s+|these\s+|those\s+)?(?:marked\s+|highlighted\s+)?"
    r"tokens|the\s+feature|they)\s+(?:are|is|refer\s+to|represent|indicate|"
    r"have\s+in\s+common|responds?\s+to|detects|fires\s+on)\s*:?(?:\s+|$)(?:all\s+)?(?:that\s+)?",
    re.IGNORECASE,
)
_RELATION = re.compile(r"^(?:related|relating|referring|associated|connected)\s+to\b", re.I)
_STRIP = " \t\r\n\"'`*_“”‘’[]"
_NEXT_SENTENCE = re.compile(r"(?<=[a-z]{2}[.!?])\s+(?=[A-Z])")  # not after "e.g." or "Mr."
_LETTER = re.compile(r"[^\W\d_]")  # an explanation names something: at least one letter


def parse_explanation(text: str) -> str | None:
    """The text after the last ``Explanation:`` marker (markdown and quotes stripped).

    None when the marker is missing, or what follows it is empty or too long.
    """
    found = list(_MARKER.finditer(text))
    if not found:
        return None
    rest = text[found[-1].end() :].strip()
    line = rest.split("\n", 1)[0] if rest else ""
    expl = _NEXT_SENTENCE.split(line, maxsplit=1)[0].strip(_STRIP)  # the phrase, not a gloss
    expl = re.sub(r"\s+", " ", _MARKUP.sub("", expl)).strip(_STRIP)
    expl = noun_phrase(expl)
    if (
        not _LETTER.search(expl)
        or len(expl) > MAX_CHARS
        or expl.endswith(":")
        or _MARKER_ANY.search(expl)
    ):
        return None  # empty, rambling, cut before its content, or an echo of the format
    return expl


def noun_phrase(expl: str) -> str:
    """'The marked tokens are all related to death.' -> 'words related to death'.

    The scorers ask "does this text contain <explanation>?", so a sentence about the
    marked tokens is cut down to the thing it names.
    """
    e = _LEAD.sub("", expl).strip(_STRIP).rstrip(".").strip()
    if _RELATION.match(e):
        e = "words " + e
    return e


_SENTENCE_END = re.compile(r"[.!?;](?=\s)")


def check_reply(text: str, truncated: bool = False) -> tuple[str | None, str]:
    """(explanation, "") for a usable reply, else (None, why it is unusable).

    ``truncated``: the reply hit the token cap. An explanation on its last line may then
    be cut mid-phrase: it is kept only up to its last complete sentence.
    """
    if not text.strip():
        return None, "empty reply"
    found = list(_MARKER.finditer(text))
    if not found:
        return None, "no 'Explanation:' line"
    rest = text[found[-1].end() :]
    if truncated and "\n" not in rest.strip():
        ends = list(_SENTENCE_END.finditer(rest + " "))
        if not ends:
            return None, "truncated at the token cap"
        text = text[: found[-1].end()] + rest[: ends[-1].start()]
    parsed = parse_explanation(text)
    return (parsed, "") if parsed is not None else (None, "unusable 'Explanation:' line")


@dataclass(frozen=True)
class ExplainResult:
    """What the explainer produced for one latent."""

    status: Literal["ok", "explain_failed"]
    explanation: str | None
    raw: str  # the reply parsed, or every attempt when none parsed
    attempts: int = 1  # generations asked for (retries = attempts - 1)
    failures: tuple[str, ...] = ()  # why each rejected attempt was rejected


async def explain(
    client: LLMClient,
    examples: list[Example],
    render: TokenRenderer,
    cfg: ExplainerConfig,
    temperature: float = 0.0,
    negatives: Sequence[Example] = (),
) -> ExplainResult:
    """Ask for an explanation of the highlighted examples; re-ask on a bad reply.

    ``negatives`` are shown as inactive excerpts when ``cfg.kind == "contrastive"``
    (ignored otherwise). Exceptions of the client propagate (the stage records them).
    """
    if not examples:
        raise ValueError("explain needs at least one activating example")
    if cfg.kind == "single_token":
        raise ValueError("explainer kind single_token uses no LLM: call single_token_explanation")
    shown = list(negatives) if cfg.kind == "contrastive" else []
    messages = explain_messages(
        examples, render, cfg.highlight_threshold, cfg.show_activations,
        negatives=shown, cot=cfg.cot,
    )  # fmt: skip
    cap = cfg.cot_max_new_tokens if cfg.cot else cfg.max_new_tokens
    raws: list[str] = []
    failures: list[str] = []
    for attempt in range(cfg.max_retries + 1):
        g = await client.generate(messages, max_new_tokens=cap, temperature=temperature)
        text = g.text if attempt == 0 else PREFILL + g.text
        raws.append(text)
        parsed, why = check_reply(text, truncated=g.completion_tokens >= cap)
        if attempt and not _LETTER.search(g.text):  # the prefill alone is no answer
            parsed, why = None, "nothing after the prefilled 'Explanation:'"
        if parsed is not None:
            return ExplainResult("ok", parsed, text, attempt + 1, tuple(failures))
        failures.append(why)
        # the re-ask reminds the model of the format and opens its reply with the marker
        messages = [
            *messages[:2],
            {"role": "assistant", "content": g.text},
            {"role": "user", "content": REMINDER},
            {"role": "assistant", "content": PREFILL},
        ]
    return ExplainResult("explain_failed", None, "\n---\n".join(raws), len(raws), tuple(failures))
