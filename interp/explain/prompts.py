"""Rendering examples as text and the explainer's prompt (our own wording).

Examples are decoded token by token, so the ``<<...>>`` highlight lands on exactly the
tokens that fire (decoding the window in one piece would lose token boundaries: that is
how delphi 0.1.3 silently lost its highlights on transformers 5). Special tokens render
as nothing and newlines as a visible ``↵`` so every example stays on one line.

The prompt is short on purpose: on a CPU every prompt token costs ~10 ms. No few-shot
examples; the instructions ask for a single ``Explanation: <noun phrase>`` line. The
contrastive variant adds numbered excerpts where the feature is silent; the
chain-of-thought variant asks for a few sentences of reasoning before that line.

Text that itself contains the markers (``x << 2`` in Python, ``>>>`` prompts) is
escaped to look-alike quotes (« ») wherever markers are drawn, so a ``<<`` the LLM sees
is always ours.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from interp.latents.examples import Example
from interp.llm.base import Message

NEWLINE = "↵"

# Wording chosen on Qwen2.5-Coder-1.5B over 6 synthetic latents: instructions at the END
# of the user turn (a small model follows the last thing it read), a tally of the marked
# tokens (it names token-level features far more reliably with it), and a noun phrase
# as the answer, so scorers can ask "does this text contain <explanation>?".
EXPLAIN_SYSTEM = (
    "You study a single feature inside a language model. In each text excerpt below, the "
    "tokens where the feature is active are marked <<like this>>."
)
FORMAT = (
    'Reply with one line: "Explanation:" followed by a noun phrase of at most 12 words '
    "that names what the marked tokens are."
)
QUESTION = "What do the marked tokens have in common? " + FORMAT
# "...that the inactive excerpts lack?" made Qwen describe the excerpts instead of the
# tokens; naming the negatives' role and asking the plain question works.
CONTRAST = "The inactive excerpts show what the feature does not respond to. "
CONTRASTIVE_QUESTION = CONTRAST + QUESTION
COT = (
    "First think it through in at most three short sentences, then end with one line: "
    '"Explanation:" followed by a noun phrase of at most 12 words that names what the '
    "marked tokens are."
)
COT_QUESTION = "What do the marked tokens have in common? " + COT
COT_CONTRASTIVE_QUESTION = CONTRAST + COT_QUESTION
REMINDER = "Your reply did not follow the format. " + FORMAT
_OPEN, _CLOSE = "<<", ">>"


class TokenRenderer:
    """Token id -> display string for one tokenizer, memoised (ids repeat a lot)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self._memo: dict[int, str] = {}

    def strings(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        return [self._one(int(i)) for i in ids]

    def _one(self, i: int) -> str:
        s = self._memo.get(i)
        if s is None:
            s = "" if i in self._special else self.tokenizer.decode([i])
            s = s.replace("\r\n", NEWLINE).replace("\n", NEWLINE)
            self._memo[i] = s
        return s


def highlight_mask(acts: np.ndarray, threshold: float) -> np.ndarray:
    """Tokens at or above ``threshold`` x the example's max (never silent ones)."""
    peak = float(np.max(acts)) if len(acts) else 0.0
    if peak <= 0:
        return np.zeros(len(acts), dtype=bool)
    return (acts >= threshold * peak) & (acts > 0)


def escape_markers(text: str) -> str:
    """Literal ``<<`` / ``>>`` in the text become ``«`` / ``»`` (the markers stay ours)."""
    return text.replace(_OPEN, "«").replace(_CLOSE, "»")


def highlight(strings: list[str], mask: np.ndarray) -> str:
    """Join token strings, wrapping each run of marked tokens in one ``<<...>>``.

    Whitespace at a run's edges goes outside the markers ("was <<over the moon>>");
    literal markers in the text are escaped, also where a lone ``<`` or ``>`` of the
    text would touch one of ours.
    """
    out: list[str] = []
    i = 0
    while i < len(strings):
        j = i
        while j < len(strings) and mask[j] == mask[i]:
            j += 1
        run = escape_markers("".join(strings[i:j]))
        core = run.strip()
        if mask[i] and core:
            lead = run[: len(run) - len(run.lstrip())]
            trail = run[len(run.rstrip()) :]
            if not lead and out and out[-1].endswith("<"):
                out[-1] = out[-1][:-1] + "‹"
            out.append(f"{lead}<<{core.replace('<', '‹').replace('>', '›')}>>{trail}")
        else:
            if out and out[-1].endswith(_CLOSE) and run.startswith(">"):
                run = "›" + run[1:]
            out.append(run)
        i = j
    return "".join(out)


def render_example(
    ex: Example,
    render: TokenRenderer,
    mask: np.ndarray | None = None,
    scale: float | None = None,
) -> str:
    """One example as one line: highlighted where ``mask``; with 0-10 values if ``scale``."""
    strings = render.strings(ex.tokens)
    if mask is None:
        return "".join(strings).strip()
    text = highlight(strings, mask).strip()
    if scale is None or not mask.any():
        return text
    values = np.clip(np.ceil(ex.acts[mask] * 10 / scale), 0, 10).astype(int)
    pairs = ", ".join(
        f"{s.strip() or repr(s)}={v}" for s, v in zip(np.array(strings)[mask], values)
    )
    return f"{text}  [activations: {pairs}]"


def marked_tally(strings: list[list[str]], masks: list[np.ndarray], k: int) -> str:
    """The ``k`` most frequent marked tokens with counts: '"love" (9), "loved" (2)'.

    Tokens are JSON-quoted, so a token that is a quote or a backslash stays readable.
    """
    counts = Counter(
        s.strip() for ss, m in zip(strings, masks) for s, on in zip(ss, m) if on and s.strip()
    )
    return ", ".join(f"{quote(w)} ({n})" for w, n in counts.most_common(k))


def quote(token: str) -> str:
    """A token in double quotes, JSON-escaped: '"def"', '"\\""'."""
    return json.dumps(token, ensure_ascii=False)


def explain_messages(
    examples: list[Example],
    render: TokenRenderer,
    threshold: float,
    show_activations: bool,
    n_tally: int = 8,
    *,
    negatives: Sequence[Example] = (),
    cot: bool = False,
) -> list[Message]:
    """The explainer's chat: numbered highlighted excerpts, inactive ones, a tally, the question.

    ``negatives`` (the contrastive explainer) are shown unmarked under their own heading;
    ``cot`` asks for reasoning before the ``Explanation:`` line.
    """
    scale = max(float(e.acts.max()) for e in examples) if show_activations else None
    masks = [highlight_mask(e.acts, threshold) for e in examples]
    lines = [
        f"{i}. {render_example(e, render, m, scale)}"
        for i, (e, m) in enumerate(zip(examples, masks), 1)
    ]
    tally = marked_tally([render.strings(e.tokens) for e in examples], masks, n_tally)
    if negatives:
        user = "Excerpts where the feature is active:\n" + "\n".join(lines)
        silent = [
            f"{i}. {render_example(e, render, np.zeros(len(e.tokens), dtype=bool))}"
            for i, e in enumerate(negatives, 1)
        ]
        user += "\n\nExcerpts where it is inactive (nothing marked):\n" + "\n".join(silent)
    else:
        user = "Excerpts:\n" + "\n".join(lines)
    if tally:
        user += f"\n\nMost frequent marked tokens: {tally}."
    questions = {
        (False, False): QUESTION,
        (True, False): CONTRASTIVE_QUESTION,
        (False, True): COT_QUESTION,
        (True, True): COT_CONTRASTIVE_QUESTION,
    }
    user += "\n\n" + questions[bool(negatives), cot]
    return [{"role": "system", "content": EXPLAIN_SYSTEM}, {"role": "user", "content": user}]
