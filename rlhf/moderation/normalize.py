"""Text normalisation that undoes the usual ways of slipping words past a blocklist.

:func:`normalize` folds Unicode compatibility forms (NFKC: full-width letters, ligatures), case,
diacritics, zero-width and other invisible characters, and look-alike letters from Cyrillic and Greek
onto ASCII. It keeps digits and punctuation: leetspeak and letters split by spaces or dots are undone
at match time by :func:`phrase_regex`, which compiles a blocklist phrase into a pattern that accepts
each letter's leetspeak forms and separators between letters, but only at word boundaries (so "kill"
matches "k 1 l l" and "K.I.L.L" but never "skill").
"""

from __future__ import annotations

import re
import unicodedata

# Characters that render as nothing (or nearly): zero-width spaces and joiners, word joiner, BOM,
# soft hyphen, Mongolian vowel separator, invisible operators, variation selectors.
_INVISIBLE = dict.fromkeys(
    [0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0]
    + list(range(0x200B, 0x2010))
    + list(range(0x202A, 0x202F))
    + list(range(0x2060, 0x2070))
    + list(range(0xFE00, 0xFE10)),
    None,
)

# Look-alike letters (lowercase, as they are after casefolding) mapped to the Latin letter they imitate.
HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "г": "r", "д": "d", "е": "e", "ё": "e", "з": "3", "к": "k",
    "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x",
    "ч": "4", "ш": "w", "щ": "w", "ъ": "b", "ь": "b", "э": "e", "ѕ": "s", "і": "i",
    "ї": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ү": "y", "ғ": "f", "ҝ": "k",
    "ɡ": "g", "ѵ": "v", "ѡ": "w",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "θ": "o", "ι": "i", "κ": "k",
    "λ": "l", "μ": "u", "ν": "v", "ο": "o", "π": "n", "ρ": "p", "σ": "o", "ς": "c", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j", "ϐ": "b", "ϑ": "o", "ϱ": "p",
    # Latin look-alikes outside ASCII that NFKC keeps
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɩ": "i", "ɪ": "i", "ʏ": "y", "ɴ": "n", "ʀ": "r", "ʟ": "l", "ᴀ": "a",
    "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ᴋ": "k", "ᴍ": "m", "ᴏ": "o", "ᴘ": "p", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v",
    "ᴡ": "w", "ᴢ": "z", "ø": "o", "đ": "d", "ħ": "h", "ł": "l", "ŧ": "t", "ß": "ss", "æ": "ae", "œ": "oe",
}  # fmt: skip
_HOMOGLYPH_TABLE = str.maketrans(HOMOGLYPHS)

# Characters that stand for a letter in leetspeak; the letter always stands for itself too.
LEET = {
    "a": "4@",
    "b": "8",
    "e": "3",
    "g": "96",
    "i": "1!|",
    "l": "1|",
    "o": "0",
    "s": "5$",
    "t": "7+",
    "z": "2",
}

# What may sit between two letters of an obfuscated word ("b o m b", "b.o.m.b", "b-o-m-b", "b_o_m_b"):
# up to three non-alphanumeric characters (leetspeak symbols are letters when they fit the word).
_SEPARATOR = r"[\W_]{0,3}"
# What may sit between two words of a phrase: any run of separators, possibly none ("makeabomb").
_WORD_GAP = r"[\W_]*"
# A wildcard word in a phrase ("kill * process"): up to three arbitrary words.
_WILDCARD = r"(?:[a-z0-9'’]+[\W_]+){0,3}?"


def normalize(text: str) -> str:
    """Fold ``text`` for matching: NFKC, invisible characters removed, casefold, diacritics stripped,
    look-alike letters mapped to Latin. Digits and punctuation are kept (see :func:`phrase_regex`)."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()
    # Strip diacritics: decompose, drop the combining marks, recompose.
    decomposed = unicodedata.normalize("NFD", text)
    text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", text).translate(_HOMOGLYPH_TABLE)


def _letter(ch: str) -> str:
    """The pattern for one letter of a phrase: the letter or its leetspeak forms, repeated."""
    alternatives = ch + LEET.get(ch, "")
    body = re.escape(alternatives[0]) if len(alternatives) == 1 else "[" + re.escape(alternatives) + "]"
    return body + "+"


def _word(word: str) -> str:
    """Pattern for one phrase word; a trailing ``*`` makes it a prefix ("kill*" matches "killing")."""
    prefix = word.endswith("*")
    word = normalize(word.rstrip("*"))
    letters = [c for c in word if c.isalnum()]
    if not letters:
        raise ValueError(f"phrase word {word!r} has no letters or digits")
    body = _SEPARATOR.join(_letter(c) for c in letters)
    return body + (r"[a-z0-9]*" if prefix else "")


_TOKEN = re.compile(r"\([^()]*\)|\S+")


def _alternatives(token: str) -> str:
    """Pattern for a phrase token: a word, ``a|b`` (one-word choices) or ``(a b|c)`` (phrase choices)."""
    if token.startswith("(") and token.endswith(")"):
        # an empty alternative makes the group optional: "(all|)" matches "all" or nothing
        choices = [_sequence(alt.split()) if alt.strip() else "" for alt in token[1:-1].split("|")]
    else:
        choices = [_word(w) for w in token.split("|") if w]
    if not any(choices):
        raise ValueError(f"empty choice {token!r} in a blocklist phrase")
    return "(?:" + "|".join(choices) + ")"


def _sequence(tokens: list[str]) -> str:
    pattern = ""
    for i, token in enumerate(tokens):
        if token == "*":
            pattern += _WILDCARD
            continue
        pattern += _alternatives(token)
        if i + 1 < len(tokens):
            pattern += _WORD_GAP
    return pattern


def phrase_regex(phrase: str) -> re.Pattern[str]:
    """Compile a blocklist phrase into a pattern for :func:`normalize`-d text.

    Grammar: words separated by spaces; ``a|b`` is a choice of single words and ``(a b|c d)`` a choice
    of word sequences (``(a|)`` makes ``a`` optional); a word ending in ``*`` is a prefix ("kill*" matches "killing"); a lone ``*``
    stands for up to three arbitrary words. Each letter accepts its leetspeak forms and repeats,
    letters may be split by up to three separator characters, and the phrase must start and end at a
    word boundary. Raises ValueError on an empty phrase or a word without letters.
    """
    tokens = _TOKEN.findall(phrase)
    if not tokens:
        raise ValueError("empty blocklist phrase")
    return re.compile(r"(?<![a-z0-9])" + _sequence(tokens) + r"(?![a-z0-9])")
