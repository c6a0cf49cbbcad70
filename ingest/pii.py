"""Personal data never reaches the warehouse in plain text: keyed hashes and masked display forms."""

from __future__ import annotations

import hashlib
import hmac
import re

from stdnum.cn import ric

from ingest.config import pii_hash_key

PHONE_RE = re.compile(r"(?<![0-9A-Za-z])1[3-9]\d{9}(?![0-9A-Za-z])")
ID_NUMBER_RE = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def keyed_hash(value: str, kind: str) -> str:
    """HMAC-SHA256 of a normalised identifier; `kind` separates namespaces (a phone never equals a card)."""
    msg = f"{kind}:{value.strip().upper()}".encode()
    return hmac.new(pii_hash_key(), msg, hashlib.sha256).hexdigest()


def mask_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "*" * len(digits)
    return f"{digits[:3]}****{digits[-4:]}"


def mask_card(card: str) -> str:
    card = card.strip()
    return ("*" * max(len(card) - 4, 0)) + card[-4:]


def id_number_valid(id_number: str) -> bool:
    """GB 11643 check: length, birth date and the ISO 7064 MOD 11-2 check digit."""
    return ric.is_valid(id_number.strip().upper())


def scrub_free_text(text: str) -> str:
    """Free text (case notes) may quote a phone or ID number: replace them before storage."""
    text = ID_NUMBER_RE.sub("[身份证号已脱敏]", text)
    return PHONE_RE.sub(lambda m: mask_phone(m.group(0)), text)
