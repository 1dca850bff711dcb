"""The default explainer: one generation, strict parsing, one retry, failures kept.

delphi scores "Explanation could not be parsed." as if it were an explanation. Here a
reply without a usable ``Explanation:`` line gets one retry with a reminder; if that
fails too the latent is ``explain_failed``, its raw replies are kept, and nothing is
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
_MARKER = re.compile(r"explanation\s*\**\s*[:：]", re.IGNORECASE)
_MARKUP = re.compile(r"<<|>>|`|\*\*|__")  # inline markup; quotes inside are kept
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
    if not expl or len(expl) > MAX_CHARS:
        return None
    return expl


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
    for _attempt in range(2):
        g = await client.generate(
            messages, max_new_tokens=cfg.max_new_tokens, temperature=temperature
        )
        raws.append(g.text)
        parsed = parse_explanation(g.text)
        if parsed is not None:
            return ExplainResult("ok", parsed, g.text)
        messages = [
            *messages,
            {"role": "assistant", "content": g.text},
            {"role": "user", "content": REMINDER},
        ]
    return ExplainResult("explain_failed", None, "\n---\n".join(raws))
