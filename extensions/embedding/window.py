"""How many tokens a text has for the encoder, and whether it fits in the encoder's window.

The encoder truncates every text to ``max_seq_length`` tokens, so two texts that
differ only after the window get the same vector. Callers that must not treat such
texts as equal (the semantic cache) ask ``fits`` first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class TokenWindow:
    """Counts tokens as the encoder's tokenizer does, special tokens included, untruncated."""

    def __init__(self, count: Callable[[str], int], max_tokens: int) -> None:
        self._count = count
        self.max_tokens = max_tokens

    @classmethod
    def from_tokenizer_file(cls, path: Path, max_tokens: int) -> TokenWindow:
        """A counter of its own (no truncation, no padding), separate from the encoding one,
        so that counting on the event loop never races the encoder thread."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return cls(lambda text: len(tokenizer.encode(text)), max_tokens)

    def token_count(self, text: str) -> int:
        return self._count(text)

    def fits(self, text: str) -> bool:
        """True when the encoder sees the whole text (it is not cut at ``max_tokens``)."""
        return self._count(text) <= self.max_tokens
