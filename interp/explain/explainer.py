"""The default explainer: one generation, strict parsing, one retry, failures kept.

delphi scores "Explanation could not be parsed." as if it were an explanation. Here a
reply without a usable ``Explanation:`` line gets one retry with a reminder, the reply
opened with the marker (a prefill, which even SmolLM2-135M follows); if that fails too the latent is ``explain_failed``, its raw replies are kept, and nothing is
scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from interp.config import ExplainerConfig
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


def parse_explanation(text: str) -> str | None:
    """The text after the last ``Explanation:`` marker (markdown and quotes stripped).

    None when the marker is missing, or what follows it is empty or too long.
    """
    found = list(_MARKER.finditer(text))
    if not found:
        return None
    rest = text[found[-1].end() :].strip()
    line = rest.split("\n", 1)[0] if rest else ""
    expl = line.strip(_STRIP)
    expl = re.sub(r"\s+", " ", _MARKUP.sub("", expl)).strip(_STRIP)
    expl = noun_phrase(expl)
    if not expl or len(expl) > MAX_CHARS or expl.endswith(":") or _MARKER_ANY.search(expl):
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


@dataclass(frozen=True)
class ExplainResult:
    """What the explainer produced for one latent."""

    status: Literal["ok", "explain_failed"]
    explanation: str | None
    raw: str  # the reply parsed, or every attempt when none parsed


async def explain(
    client: LLMClient,
    examples: list[Example],
    render: TokenRenderer,
    cfg: ExplainerConfig,
    temperature: float = 0.0,
) -> ExplainResult:
    """Ask for an explanation of the highlighted examples; retry once on a bad reply."""
    if not examples:
        raise ValueError("explain needs at least one activating example")
    messages = explain_messages(examples, render, cfg.highlight_threshold, cfg.show_activations)
    raws = []
    for attempt in range(2):
        g = await client.generate(
            messages, max_new_tokens=cfg.max_new_tokens, temperature=temperature
        )
        text = g.text if attempt == 0 else PREFILL + g.text
        raws.append(text)
        parsed = parse_explanation(text)
        if parsed is not None:
            return ExplainResult("ok", parsed, text)
        # the retry reminds the model of the format and opens its reply with the marker
        messages = [
            *messages,
            {"role": "assistant", "content": g.text},
            {"role": "user", "content": REMINDER},
            {"role": "assistant", "content": PREFILL},
        ]
    return ExplainResult("explain_failed", None, "\n---\n".join(raws))
