"""squall.locale: translation loading, lookup, plural forms and formatting."""

from __future__ import annotations

import datetime
import logging
import struct
from pathlib import Path
from typing import Dict, Iterator

import pytest

import squall.locale
from squall.locale import CSVLocale, GettextLocale, Locale

UTC = datetime.timezone.utc


@pytest.fixture(autouse=True)
def isolated_locale_state() -> Iterator[None]:
    names = ("_translations", "_supported_locales", "_use_gettext", "_default_locale")
    saved = {name: getattr(squall.locale, name) for name in names}
    Locale._cache = {}
    yield
    for name, value in saved.items():
        setattr(squall.locale, name, value)
    Locale._cache = {}


def write_mo(path: Path, messages: Dict[str, str]) -> None:
    """Write a GNU gettext catalog (the .mo format) holding ``messages``."""
    keys = sorted(messages)
    ids = [key.encode() for key in keys]
    strs = [messages[key].encode() for key in keys]
    header_size = 7 * 4
    table_size = len(keys) * 8
    data_start = header_size + 2 * table_size
    blob = b""
    id_table = []
    for item in ids:
        id_table.append((len(item), data_start + len(blob)))
        blob += item + b"\0"
    str_table = []
    for item in strs:
        str_table.append((len(item), data_start + len(blob)))
        blob += item + b"\0"
    header = struct.pack(
        "<7I", 0x950412DE, 0, len(keys), header_size, header_size + table_size, 0, 0
    )
    tables = b"".join(struct.pack("<2I", *entry) for entry in id_table + str_table)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + tables + blob)


FRENCH_CATALOG = {
    "": "Content-Type: text/plain; charset=UTF-8\nPlural-Forms: nplurals=2; plural=(n > 1);\n",
    "school": "\u00e9cole",
    "law\x04right": "le droit",
    "good\x04right": "le bien",
    "organization\x04club\x00clubs": "le club\x00les clubs",
    "stick\x04club\x00clubs": "le b\u00e2ton\x00les b\u00e2tons",
    "cat\x00cats": "chat\x00chats",
}


# Picking a locale


def test_default_locale_without_translations() -> None:
    locale = squall.locale.get()
    assert locale.code == "en_US"
    assert isinstance(locale, CSVLocale)
    assert squall.locale.get("xx", "") is locale


def test_get_closest_normalises_codes(tmp_path: Path) -> None:
    (tmp_path / "fr_FR.csv").write_text('"school","\u00e9cole"\n', encoding="utf-8")
    (tmp_path / "de.csv").write_text('"school","Schule"\n', encoding="utf-8")
    squall.locale.load_translations(str(tmp_path))
    assert squall.locale.get("fr-fr").code == "fr_FR"
    assert squall.locale.get("FR_fr").code == "fr_FR"
    assert squall.locale.get("de_AT").code == "de"
    assert squall.locale.get("a_b_c", "es", "de").code == "de"
    assert squall.locale.get("fr").code == "en_US"
    assert set(squall.locale.get_supported_locales()) == {"en_US", "fr_FR", "de"}


def test_set_default_locale(tmp_path: Path) -> None:
    (tmp_path / "fr_FR.csv").write_text('"school","\u00e9cole"\n', encoding="utf-8")
    squall.locale.load_translations(str(tmp_path))
    squall.locale.set_default_locale("fr_FR")
    assert set(squall.locale.get_supported_locales()) == {"fr_FR"}
    assert squall.locale.get("ja").translate("school") == "\u00e9cole"


def test_get_rejects_unsupported_code() -> None:
    with pytest.raises(ValueError, match="zz_ZZ"):
        Locale.get("zz_ZZ")


def test_locale_names_and_direction() -> None:
    assert squall.locale.LOCALE_NAMES["es_LA"]["name"] == "Espa\u00f1ol"
    assert CSVLocale("fr_FR", {}).name == "Fran\u00e7ais"
    assert CSVLocale("xx", {}).name == "Unknown"
    assert [CSVLocale(code, {}).rtl for code in ("ar_AR", "fa_IR", "he_IL", "en_US")] == [
        True,
        True,
        True,
        False,
    ]


# CSV translations


def test_csv_translations_with_plurals(tmp_path: Path) -> None:
    (tmp_path / "es_LA.csv").write_text(
        '"%(name)s liked this","A %(name)s le gust\u00f3 esto","singular"\n'
        '"%(name)s liked this","A %(name)s les gust\u00f3 esto","plural"\n'
        '"hello","hola"\n',
        encoding="utf-8",
    )
    squall.locale.load_translations(str(tmp_path))
    locale = squall.locale.get("es_LA")
    assert isinstance(locale, CSVLocale)
    message = "%(name)s liked this"
    assert locale.translate(message, message, 1) == "A %(name)s le gust\u00f3 esto"
    assert locale.translate(message, message, 3) == "A %(name)s les gust\u00f3 esto"
    assert locale.translate("hello") == "hola"
    assert locale.translate("untranslated") == "untranslated"
    assert locale.translate("one", "many", 2) == "many"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_csv_encodings_are_detected(tmp_path: Path, encoding: str) -> None:
    (tmp_path / "fr_FR.csv").write_bytes('"school","\u00e9cole"\n'.encode(encoding))
    squall.locale.load_translations(str(tmp_path))
    assert squall.locale.get("fr_FR").translate("school") == "\u00e9cole"


def test_csv_explicit_encoding(tmp_path: Path) -> None:
    (tmp_path / "fr_FR.csv").write_bytes('"school","\u00e9cole"\n'.encode("latin-1"))
    squall.locale.load_translations(str(tmp_path), encoding="latin-1")
    assert squall.locale.get("fr_FR").translate("school") == "\u00e9cole"


def test_csv_bad_rows_are_logged_with_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "fr_FR.csv"
    path.write_text('"school","\u00e9cole"\n"lonely"\n"a","b","sometimes"\n', encoding="utf-8")
    (tmp_path / "not-a-locale.csv").write_text('"a","b"\n', encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="squall.general"):
        squall.locale.load_translations(str(tmp_path))
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"{path} line 2" in message for message in messages)
    assert any("'sometimes'" in message and f"{path} line 3" in message for message in messages)
    assert any("not-a-locale" in message for message in messages)
    assert squall.locale.get("fr_FR").translate("school") == "\u00e9cole"
    assert set(squall.locale.get_supported_locales()) == {"en_US", "fr_FR"}


def test_csv_locale_pgettext_ignores_context(caplog: pytest.LogCaptureFixture) -> None:
    locale = CSVLocale("fr_FR", {"unknown": {"right": "droit"}})
    with caplog.at_level(logging.WARNING, logger="squall.general"):
        assert locale.pgettext("law", "right") == "droit"
    assert "pgettext" in caplog.text


def test_reloading_translations_drops_cached_locales(tmp_path: Path) -> None:
    (tmp_path / "fr_FR.csv").write_text('"school","\u00e9cole"\n', encoding="utf-8")
    squall.locale.load_translations(str(tmp_path))
    assert squall.locale.get("fr_FR").translate("school") == "\u00e9cole"
    (tmp_path / "fr_FR.csv").write_text('"school","coll\u00e8ge"\n', encoding="utf-8")
    squall.locale.load_translations(str(tmp_path))
    assert squall.locale.get("fr_FR").translate("school") == "coll\u00e8ge"


# gettext translations


def test_gettext_translations_with_context_and_plurals(tmp_path: Path) -> None:
    write_mo(tmp_path / "fr_FR" / "LC_MESSAGES" / "app.mo", FRENCH_CATALOG)
    (tmp_path / "es_ES").mkdir()  # no catalog: skipped
    (tmp_path / "README").write_text("not a locale", encoding="utf-8")
    squall.locale.load_gettext_translations(str(tmp_path), "app")
    assert set(squall.locale.get_supported_locales()) == {"en_US", "fr_FR"}
    locale = squall.locale.get("fr_FR")
    assert isinstance(locale, GettextLocale)
    assert locale.translate("school") == "\u00e9cole"
    assert locale.translate("cat", "cats", 1) == "chat"
    assert locale.translate("cat", "cats", 5) == "chats"
    assert locale.pgettext("law", "right") == "le droit"
    assert locale.pgettext("good", "right") == "le bien"
    assert locale.pgettext("organization", "club", "clubs", 1) == "le club"
    assert locale.pgettext("organization", "club", "clubs", 2) == "les clubs"
    assert locale.pgettext("stick", "club", "clubs", 2) == "les b\u00e2tons"
    # Unknown contexts fall back to the context-free message.
    assert locale.pgettext("other", "school") == "school"
    assert locale.pgettext("other", "cat", "cats", 2) == "chats"


# Formatting


def test_format_date_relative() -> None:
    locale = squall.locale.get("en_US")
    for now in (datetime.datetime.now(UTC), datetime.datetime.now(UTC).replace(tzinfo=None)):
        assert locale.format_date(now - datetime.timedelta(seconds=2)) == "2 seconds ago"
        assert locale.format_date(now - datetime.timedelta(minutes=2)) == "2 minutes ago"
        assert locale.format_date(now - datetime.timedelta(hours=2)) == "2 hours ago"
        assert locale.format_date(now - datetime.timedelta(days=1), shorter=True) == "yesterday"
        assert locale.format_date(now - datetime.timedelta(days=1)).startswith("yesterday at ")
        two_days = now - datetime.timedelta(days=2)
        assert locale.format_date(two_days, shorter=True) == two_days.strftime("%A")
        old = now - datetime.timedelta(days=300)
        assert locale.format_date(old, shorter=True) == f"{old.strftime('%B')} {old.day}"
        older = now - datetime.timedelta(days=500)
        assert locale.format_date(older, shorter=True) == (
            f"{older.strftime('%B')} {older.day}, {older.year}"
        )


def test_format_date_small_future_skew_counts_as_now() -> None:
    locale = squall.locale.get("en_US")
    soon = datetime.datetime.now(UTC) + datetime.timedelta(seconds=5)
    assert locale.format_date(soon) == "0 seconds ago"


def test_format_date_far_future_is_absolute() -> None:
    locale = squall.locale.get("en_US")
    later = datetime.datetime.now(UTC) + datetime.timedelta(days=1, seconds=30)
    assert locale.format_date(later, shorter=True) == (
        f"{later.strftime('%B')} {later.day}, {later.year}"
    )


def test_format_date_full_format_and_clocks() -> None:
    date = datetime.datetime(2013, 4, 28, 18, 35)
    assert CSVLocale("en_US", {}).format_date(date, full_format=True) == (
        "April 28, 2013 at 6:35 pm"
    )
    assert CSVLocale("fr_FR", {}).format_date(date, full_format=True) == ("April 28, 2013 at 18:35")
    assert CSVLocale("zh_CN", {}).format_date(date, full_format=True) == (
        "April 28, 2013 at \u4e0b\u53486:35"
    )
    morning = datetime.datetime(2013, 4, 28, 0, 5)
    assert CSVLocale("en", {}).format_date(morning, full_format=True).endswith("12:05 am")


def test_format_date_gmt_offset_and_timestamps() -> None:
    locale = CSVLocale("en_US", {})
    date = datetime.datetime(2013, 4, 28, 1, 0, tzinfo=UTC)
    # Eight hours behind UTC: still the evening before.
    assert locale.format_date(date, gmt_offset=480, full_format=True) == (
        "April 27, 2013 at 5:00 pm"
    )
    assert locale.format_date(date.timestamp(), full_format=True) == "April 28, 2013 at 1:00 am"


def test_format_day() -> None:
    locale = squall.locale.get("en_US")
    date = datetime.datetime(2013, 4, 28, 18, 35)
    assert locale.format_day(date) == "Sunday, April 28"
    assert locale.format_day(date=date, dow=False) == "April 28"
    assert locale.format_day(date, gmt_offset=24 * 60) == "Saturday, April 27"


def test_list() -> None:
    locale = squall.locale.get("en_US")
    assert locale.list([]) == ""
    assert locale.list(["A"]) == "A"
    assert locale.list(["A", "B"]) == "A and B"
    assert locale.list(["A", "B", "C"]) == "A, B and C"
    assert CSVLocale("fa_IR", {}).list(["A", "B", "C"]) == "A \u0648 B and C"


def test_friendly_number() -> None:
    locale = squall.locale.get("en_US")
    assert locale.friendly_number(1000000) == "1,000,000"
    assert locale.friendly_number(999) == "999"
    assert locale.friendly_number(-1234567) == "-1,234,567"
    assert locale.friendly_number(1234.5) == "1,234.5"  # type: ignore[arg-type]
    assert CSVLocale("fr_FR", {}).friendly_number(1000000) == "1000000"


def test_translated_month_and_day_names(tmp_path: Path) -> None:
    (tmp_path / "fr_FR.csv").write_text(
        '"April","avril"\n"Sunday","dimanche"\n"%(weekday)s, %(month_name)s %(day)s",'
        '"%(weekday)s %(day)s %(month_name)s"\n',
        encoding="utf-8",
    )
    squall.locale.load_translations(str(tmp_path))
    locale = squall.locale.get("fr_FR")
    assert locale.format_day(datetime.datetime(2013, 4, 28)) == "dimanche 28 avril"


def test_base_locale_translate_picks_plural_form() -> None:
    locale = Locale("en_US")
    assert locale.translate("apple") == "apple"
    assert locale.translate("apple", "apples", 1) == "apple"
    assert locale.translate("apple", "apples", 2) == "apples"
    assert locale.pgettext("fruit", "apple", "apples", 0) == "apples"
