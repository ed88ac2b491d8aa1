"""Text handling for synthesis: where sentences end, and how long pieces are cut.

Kokoro's English pipeline only splits its input at 510 phonemes, so a paragraph handed to it
whole is synthesized whole before any audio exists. The service streams sentence by
sentence instead: :func:`split_sentences` finds the ends, so the first sentence is heard
while the next one is computed.

The rules are deliberately plain (no language model):

- a sentence ends at ``.``, ``!``, ``?`` or ``…`` (runs of them too, and any closing quotes or
  brackets that follow) when whitespace comes next, and at every line break;
- a full stop does not end a sentence after a known abbreviation (``Dr.``, ``e.g.``), after a
  single letter (an initial, as in ``J. R. R. Tolkien``), or when the next word starts with
  a lower-case letter (``5 p.m. and then``);
- a piece longer than ``max_chars`` is cut at its last clause mark (``,;:`` or a dash) before
  the limit, else at its last space, else hard at the limit, so no single piece delays the
  first audio for long.
"""

from __future__ import annotations

import re
from typing import Final

#: Words whose full stop does not end a sentence (compared lower-cased, without the dot).
ABBREVIATIONS: Final = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "cf", "approx",
        "e.g", "i.e", "fig", "no", "nos", "vol", "dept", "inc", "ltd", "co", "corp", "gen",
        "col", "lt", "sgt", "capt", "rev", "hon", "jan", "feb", "mar", "apr", "jun", "jul",
        "aug", "sep", "sept", "oct", "nov", "dec",
    }
)  # fmt: skip
#: The longest piece :func:`split_sentences` returns unless told otherwise, in characters.
DEFAULT_MAX_SENTENCE_CHARS: Final = 300

# A candidate end: terminal punctuation, optional closing quotes/brackets, then whitespace.
_CLOSERS = "\"'\u201d\u2019\u00bb)]"  # straight and curly closing quotes, brackets
_END = re.compile(r"[.!?\u2026]+[" + re.escape(_CLOSERS) + r"]*(?=\s)")
_WORD_BEFORE = re.compile(r"([\w.]+)\.$")
# Clause marks: , ; : and dashes (em, en) before a space, or a spaced hyphen/dash.
_CLAUSE = re.compile(r"[,;:\u2014\u2013](?=\s)|\s[-\u2013\u2014]\s")


def split_sentences(text: str, *, max_chars: int = DEFAULT_MAX_SENTENCE_CHARS) -> list[str]:
    """Split ``text`` into sentences to synthesize one after another.

    Args:
        text: Any text; surrounding and repeated whitespace inside a sentence is kept as is
            (the G2P ignores it), empty pieces are dropped.
        max_chars: The longest piece returned; longer sentences are cut at clause marks.

    Returns:
        The pieces in order, each stripped and non-empty; ``[]`` for blank text.

    Raises:
        ValueError: ``max_chars`` is below 20 (pieces that short would cut most words).
    """
    if max_chars < 20:
        raise ValueError(f"max_chars must be at least 20, not {max_chars}")
    pieces: list[str] = []
    for line in text.splitlines():
        for sentence in _sentences_of_line(line):
            pieces.extend(_cut_long(sentence, max_chars))
    return pieces


def _sentences_of_line(line: str) -> list[str]:
    out: list[str] = []
    start = 0
    for match in _END.finditer(line):
        end = match.end()
        if _ends_sentence(line, match.start(), end):
            piece = line[start:end].strip()
            if piece:
                out.append(piece)
            start = end
    rest = line[start:].strip()
    if rest:
        out.append(rest)
    return out


def _ends_sentence(line: str, punct_start: int, end: int) -> bool:
    marks = line[punct_start:end]
    following = line[end:].lstrip()
    if following[:1].islower():
        # "5 p.m. and then", "he said hi... and left": the sentence goes on.
        return False
    if marks.rstrip(_CLOSERS) != ".":
        return True  # "!", "?", "...", "?!": always an end when a capital or nothing follows
    word = _WORD_BEFORE.search(line[: punct_start + 1])
    if word is None:
        return True
    token = word.group(1)
    if token.lower() in ABBREVIATIONS:
        return False
    # A single letter before the dot is an initial ("J. Smith"), not a one-letter sentence.
    return not (len(token) == 1 and token.isalpha())


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    out: list[str] = []
    rest = sentence
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cut = -1
        for match in _CLAUSE.finditer(window):
            if match.end() <= max_chars:
                cut = match.end()
        if cut < max_chars // 3:
            # A clause mark near the start would leave most of the text in the next piece.
            space = window.rfind(" ")
            cut = space if space >= max_chars // 3 else max_chars
        head, rest = rest[:cut].strip(), rest[cut:].strip()
        if head:
            out.append(head)
    if rest:
        out.append(rest)
    return out
