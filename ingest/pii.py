"""Personal data never reaches the warehouse in plain text: keyed hashes and masked display forms."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

from stdnum.cn import ric

from ingest.config import pii_hash_key

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
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


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


def scrub_free_text(text: str) -> str:
    """Free text (case notes) may quote a phone or ID number: replace them before storage."""
    text = ID_NUMBER_RE.sub("[身份证号已脱敏]", text)
    return PHONE_RE.sub(lambda m: mask_phone(m.group(0)), text)
