"""Personal data never reaches the warehouse in plain text: keyed hashes and masked display forms."""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from datetime import date

from stdnum.cn import ric

from warehouse.credentials import pii_hash_key

PHONE_RE = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d{9}(?![0-9A-Za-z])")
ID_NUMBER_RE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


HASH_HEX_CHARS = 32


def keyed_hash(value: str, kind: str) -> str:
    """HMAC-SHA256 of a normalised identifier, truncated to 128 bits (32 hex characters, as HMAC-SHA-256-128
    of RFC 4868): collisions stay out of reach for any number of people a city has (about 2^-64 for ten
    billion values), and a raw row is 32 bytes narrower than with the full digest, which the COPY of every
    canteen record pays for. `kind` separates namespaces (a phone never equals a card)."""
    msg = f"{kind}:{value.strip().upper()}".encode()
    return hmac.new(pii_hash_key(), msg, hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]


def mask_phone(phone: str) -> str:
    """Seven stars and the last four digits (`*******5678`, DESIGN.md section 5), whatever the number's
    length: with the first three digits shown too (`138****5678`) only 10^4 numbers share a mask, and a
    keyed hash is matched to its number by trying them all."""
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", phone))
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * 7 + digits[-4:]


def mask_card(card: str) -> str:
    """The last four characters behind four stars (`****0534`), like a phone's `138****5678`: one width
    whatever the card's length, which a star per hidden digit would give away."""
    card = card.strip()
    return "****" + card[-4:] if len(card) > 4 else "*" * len(card)


PROVINCE_CODES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43",
    "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82",
})


def id_number_valid(id_number: str) -> bool:
    """GB 11643 check: 18 characters, a province code, a real birth date (not in the future) and the
    ISO 7064 MOD 11-2 check digit (python-stdnum computes it).

    python-stdnum's `ric.is_valid` also requires the county code to have existed in the birth year;
    the code is that of the place of registration when the number was issued, so a Taiyuan resident
    born in 1981 rightly holds 140105 (小店区, created 1997): that check would flag genuine numbers.
    """
    number = id_number.strip().upper()
    if len(number) != 18 or not number[:17].isdigit() or number[:2] not in PROVINCE_CODES:
        return False
    if number[-1] != ric.calc_check_digit(number):  # the argument includes the check digit slot
        return False
    try:
        born = ric.get_birth_date(number)
    except ValueError:  # stdnum's InvalidComponent is a ValueError
        return False
    return date(1900, 1, 1) <= born <= date.today()


ID_SCRUBBED = "[身份证号已脱敏]"
# Digit runs as people write them in free text: groups of digits joined by single spaces, hyphens or dots
# (`139 1234 5678`, `+86 139-1234-5678`, `0086 13912345678`, `110105 19491231 002X`), never starting or
# ending inside a longer run or a code with letters (`SR202311060001234`).
_DIGIT_RUN = re.compile(r"(?<![0-9A-Za-z])(?<![0-9][ .-])\+?[0-9]+(?:[ .-][0-9]+)*[Xx]?(?![0-9A-Za-z])(?![ .-][0-9])")
_GROUP = re.compile(r"[0-9]+[Xx]?")
# full-width digits, X, plus, hyphens and the ideographic space, one character for one: matches found in
# the translated text replace the same characters of the original
_ASCII_DIGITS = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)}, "Ｘ": "X", "ｘ": "x", "＋": "+",
                               "－": "-", "‐": "-", "‑": "-", "–": "-", "—": "-", "．": ".", "\u3000": " "})


def scrub_free_text(text: str) -> str:
    """Free text (case notes, messages) may quote a phone, ID or bank-card number, in any of the forms
    people write them: each is replaced before storage (a phone by its mask, an ID number and a card by
    a marker). Names cannot be found in free text reliably and are not: see docs/security.md."""
    ascii_text = text.translate(_ASCII_DIGITS)
    out, last = [], 0
    for run in _DIGIT_RUN.finditer(ascii_text):
        for start, end, replacement in _personal_numbers(ascii_text, run):
            out += [text[last:start], replacement]
            last = end
    out.append(text[last:])
    return "".join(out)


def _personal_numbers(text: str, run: re.Match) -> list[tuple[int, int, str]]:
    """(start, end, replacement) of the personal numbers in one digit run: the longest span of its
    groups that reads as one, from the left (`2023-11-06 13912345678` holds a phone, not a card)."""
    groups = [(m.start() + run.start(), m.end() + run.start()) for m in _GROUP.finditer(run.group(0))]
    found, i = [], 0
    while i < len(groups):
        for j in range(len(groups) - 1, i - 1, -1):
            span = groups[i:j + 1]
            replacement = _classify(text[span[0][0]:span[-1][1]], [e - s for s, e in span])
            if replacement:
                start = span[0][0] - (1 if i == 0 and run.group(0).startswith("+") else 0)
                found.append((start, span[-1][1], replacement))
                i = j + 1
                break
        else:
            i += 1
    return found


def _classify(written: str, group_lengths: list[int]) -> str | None:
    digits = re.sub(r"[^0-9Xx]", "", written).upper()
    if len(digits) == 18 and digits[:17].isdigit():
        return ID_SCRUBBED
    if "X" in digits:
        return None
    national = re.sub(r"^(0086|86)(?=1[3-9][0-9]{9}$)", "", digits)
    if re.fullmatch(r"1[3-9][0-9]{9}", national):
        return mask_phone(national)
    if re.fullmatch(r"0[1-9][0-9]{8,10}", digits) and len(group_lengths) > 1:  # a landline with its area code
        return mask_phone(digits)
    # a bank card: 16-19 digits, written in one run or in groups of four
    if 16 <= len(digits) <= 19 and (len(group_lengths) == 1 or all(n == 4 for n in group_lengths[:-1])):
        return mask_card(digits)
    return None


# What a personal column of a feed (FeedSpec.pii_columns: column -> kind) becomes in its raw table: its
# keyed hash, and a masked form or a validity flag where the marts need one; free text is scrubbed.
def output_columns(name: str, kind: str) -> list[str]:
    """The raw table's columns for the feed column `name` of personal-data `kind`."""
    if kind == "name":
        return [f"{name}_hash"]
    if kind in ("phone", "card"):
        return [f"{name}_hash", f"{name}_masked"]
    if kind == "id_number":
        base = name.removesuffix("_number")
        return [f"{base}_hash", f"{base}_valid"]
    if kind == "free_text":
        return [name]
    raise ValueError(kind)


def output_values(name: str, kind: str, value: str | None) -> list[object]:
    """The values of `output_columns(name, kind)` for one cell's text (None: all None)."""
    if value is None:
        return [None] * len(output_columns(name, kind))
    if kind == "name":
        return [keyed_hash(value, "name")]
    if kind == "phone":
        return [keyed_hash(value, "phone"), mask_phone(value)]
    if kind == "card":
        return [keyed_hash(value, "card"), mask_card(value)]
    if kind == "id_number":
        return [keyed_hash(value, "id"), id_number_valid(value)]
    return [scrub_free_text(value)]
