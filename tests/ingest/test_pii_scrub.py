"""Personal numbers in free text, in the forms people write them, and the masked display forms
(DESIGN.md section 5: at most the last four digits). Pure logic: no PostgreSQL."""

from __future__ import annotations

import re
import stat

import pytest

from ingest import pii
from warehouse import credentials, settings

pytestmark = pytest.mark.unit

PHONE, ID_NUMBER, CARD = "13912345678", "11010519491231002X", "6217000123456789012"


@pytest.mark.parametrize("written", [
    "13912345678",
    "139 1234 5678",
    "139-1234-5678",
    "139.1234.5678",
    "+86 139-1234-5678",
    "+86 139 1234 5678",
    "+8613912345678",
    "0086 13912345678",
    "0086-139-1234-5678",
    "8613912345678",
    "１３９１２３４５６７８",            # full-width digits
    "＋８６　１３９－１２３４－５６７８",  # full-width plus, hyphens and ideographic space
    "(+86)13912345678",
])
def test_every_written_form_of_a_mobile_number_is_masked(written):
    text = f"居民来电{written}，请回电"
    scrubbed = pii.scrub_free_text(text)
    assert "*******5678" in scrubbed
    digits = re.sub(r"\D", "", scrubbed.translate({0xFF10 + i: str(i) for i in range(10)}))
    assert "1391234" not in digits and "1234" not in digits.replace("5678", ""), scrubbed
    assert scrubbed.startswith("居民来电") and scrubbed.endswith("，请回电")


@pytest.mark.parametrize("written", [
    "11010519491231002X",
    "11010519491231002x",
    "110105 19491231 002X",
    "110105-19491231-002X",
    "1101 0519 4912 3100 2X",
    "１１０１０５１９４９１２３１００２Ｘ",
    "110105194912310021",  # wrong check digit: still somebody's number as written
])
def test_id_numbers_with_or_without_spaces_are_replaced(written):
    scrubbed = pii.scrub_free_text(f"身份证{written}已核实")
    assert scrubbed == f"身份证{pii.ID_SCRUBBED}已核实"


@pytest.mark.parametrize("written", [
    "6217000123456789012",
    "6217 0001 2345 6789 012",
    "6217-0001-2345-6789",
    "6217000123456789",
])
def test_bank_card_like_digit_runs_keep_only_their_last_four_digits(written):
    scrubbed = pii.scrub_free_text(f"卡号{written}。")
    last4 = re.sub(r"\D", "", written)[-4:]
    assert scrubbed == f"卡号****{last4}。"


def test_landline_with_area_code_is_masked():
    assert pii.scrub_free_text("座机0351-7654321") == "座机*******4321"


def test_several_numbers_and_a_date_in_one_note():
    text = f"2023-11-06 {PHONE} 王某 身份证 110105 19491231 002X，卡 6217 0001 2345 6789 012"
    scrubbed = pii.scrub_free_text(text)
    assert scrubbed == f"2023-11-06 *******5678 王某 身份证 {pii.ID_SCRUBBED}，卡 ****9012"


@pytest.mark.parametrize("text", [
    "工单SR202311060001234已办结",       # case ids carry letters
    "小区140105001001共360户",           # division codes: 12 digits
    "2023年11月6日 08:30 处理 3 户",
    "金额 1234.50 元，面积 86.5㎡",
    "楼栋 12-3-401",
    "AP140105001501 点位",
])
def test_codes_dates_and_amounts_are_left_alone(text):
    assert pii.scrub_free_text(text) == text


def test_names_in_free_text_are_not_found():
    """Documented limit (docs/security.md): a name written in a note stays; only numbers are found."""
    assert pii.scrub_free_text("王伟反映楼道灯坏") == "王伟反映楼道灯坏"


def test_masks_show_at_most_the_last_four_digits():
    assert pii.mask_phone("13912345678") == "*******5678"
    assert pii.mask_phone("+86 139-1234-5678") == "*******5678"
    assert pii.mask_phone("１３９１２３４５６７８") == "*******5678"
    assert pii.mask_phone("0351-7654321") == "*******4321"  # one width, whatever the length
    assert pii.mask_phone("5678") == "****"
    assert pii.mask_card(CARD) == "****9012"
    for masked in (pii.mask_phone(PHONE), pii.mask_card(CARD)):
        assert len(re.sub(r"\D", "", masked)) <= 4


def test_pii_hash_key_is_required_outside_the_embedded_demo(monkeypatch, tmp_path):
    monkeypatch.delenv("PII_HASH_KEY", raising=False)
    monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://postgres@127.0.0.1:5432/gov_warehouse")
    with pytest.raises(credentials.MissingSecret) as err:
        credentials.pii_hash_key()
    message = str(err.value)
    assert "PII_HASH_KEY" in message and "secrets.token_urlsafe(32)" in message
    with pytest.raises(credentials.MissingSecret):
        pii.keyed_hash(PHONE, "phone")
    assert not (tmp_path / "secrets").exists()  # no key made up behind the operator's back


def test_the_embedded_demo_generates_a_private_key_once(monkeypatch, tmp_path):
    monkeypatch.delenv("PII_HASH_KEY", raising=False)
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("GOV_LOCAL_DIR", str(tmp_path))
    monkeypatch.setattr(credentials, "_DEMO_KEY_WARNED", False)
    with pytest.warns(UserWarning, match="PII_HASH_KEY is unset"):
        key = credentials.pii_hash_key()
    path = tmp_path / "secrets" / "pii_hash_key"
    assert path.read_text().strip().encode() == key and len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert credentials.pii_hash_key() == key  # kept: the same person hashes alike every night
    assert settings.REPO_ROOT not in path.parents or ".local" in path.parts
