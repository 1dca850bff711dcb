"""A word-level stand-in tokenizer for prompt and scorer unit tests."""

from __future__ import annotations

from interp.explain.prompts import TokenRenderer

WORDS = ["<s>", " the", " cat", " sat", " on", " mat", " dog", " ran", "\n", " a", " big"]
CAT = 2


class WordTokenizer:
    """Token id -> word; id 0 is special."""

    all_special_ids = [0]

    def decode(self, ids: list[int]) -> str:
        return "".join(WORDS[i] for i in ids)


RENDER = TokenRenderer(WordTokenizer())
