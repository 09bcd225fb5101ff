"""Translations and locale-aware formatting (Tornado's ``tornado.locale`` API).

Translations come either from CSV files (``load_translations``) or from gettext ``.mo``
catalogs (``load_gettext_translations``). ``get("fr_FR", "en")`` picks the best supported
locale; a ``Locale`` translates messages (with plural forms and, for gettext, contexts)
and formats dates, days, lists and numbers.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import gettext
import logging
import os
import re
from typing import Any, Dict, Iterable, Optional, Union

__all__ = [
    "CONTEXT_SEPARATOR",
    "CSVLocale",
    "GettextLocale",
    "LOCALE_NAMES",
    "Locale",
    "get",
    "get_supported_locales",
    "load_gettext_translations",
    "load_translations",
    "set_default_locale",
]

# Same logger object as squall.log.gen_log.
_log = logging.getLogger("squall.general")

# gettext's convention for "context" + separator + "message" catalog keys.
CONTEXT_SEPARATOR = "\x04"

_default_locale = "en_US"
# Locale code -> CSV tables ({"plural"|"singular"|"unknown": {message: translation}})
# or a gettext translations object, depending on _use_gettext.
_translations: Dict[str, Any] = {}
_supported_locales = frozenset([_default_locale])
_use_gettext = False

_CSV_LOCALE_CODE = re.compile(r"[a-z]+(_[A-Z]+)?$")
_PLURAL_KINDS = ("plural", "singular", "unknown")

# Locale code -> English name and the language's own name for itself.
LOCALE_NAMES: Dict[str, Dict[str, str]] = {
    "af_ZA": {"name_en": "Afrikaans", "name": "Afrikaans"},
    "am_ET": {"name_en": "Amharic", "name": "\u12a0\u121b\u122d\u129b"},
    "ar_AR": {"name_en": "Arabic", "name": "\u0627\u0644\u0639\u0631\u0628\u064a\u0629"},
    "bg_BG": {
        "name_en": "Bulgarian",
        "name": "\u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438",
    },
    "bn_IN": {"name_en": "Bengali", "name": "\u09ac\u09be\u0982\u09b2\u09be"},
    "bs_BA": {"name_en": "Bosnian", "name": "Bosanski"},
    "ca_ES": {"name_en": "Catalan", "name": "Catal\u00e0"},
    "cs_CZ": {"name_en": "Czech", "name": "\u010ce\u0161tina"},
    "cy_GB": {"name_en": "Welsh", "name": "Cymraeg"},
    "da_DK": {"name_en": "Danish", "name": "Dansk"},
    "de_DE": {"name_en": "German", "name": "Deutsch"},
    "el_GR": {"name_en": "Greek", "name": "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac"},
    "en_GB": {"name_en": "English (UK)", "name": "English (UK)"},
    "en_US": {"name_en": "English (US)", "name": "English (US)"},
    "es_ES": {"name_en": "Spanish (Spain)", "name": "Espa\u00f1ol (Espa\u00f1a)"},
    "es_LA": {"name_en": "Spanish", "name": "Espa\u00f1ol"},
    "et_EE": {"name_en": "Estonian", "name": "Eesti"},
    "eu_ES": {"name_en": "Basque", "name": "Euskara"},
    "fa_IR": {"name_en": "Persian", "name": "\u0641\u0627\u0631\u0633\u06cc"},
    "fi_FI": {"name_en": "Finnish", "name": "Suomi"},
    "fr_CA": {"name_en": "French (Canada)", "name": "Fran\u00e7ais (Canada)"},
    "fr_FR": {"name_en": "French", "name": "Fran\u00e7ais"},
    "ga_IE": {"name_en": "Irish", "name": "Gaeilge"},
    "gl_ES": {"name_en": "Galician", "name": "Galego"},
    "he_IL": {"name_en": "Hebrew", "name": "\u05e2\u05d1\u05e8\u05d9\u05ea"},
    "hi_IN": {"name_en": "Hindi", "name": "\u0939\u093f\u0928\u094d\u0926\u0940"},
    "hr_HR": {"name_en": "Croatian", "name": "Hrvatski"},
    "hu_HU": {"name_en": "Hungarian", "name": "Magyar"},
    "id_ID": {"name_en": "Indonesian", "name": "Bahasa Indonesia"},
    "is_IS": {"name_en": "Icelandic", "name": "\u00cdslenska"},
    "it_IT": {"name_en": "Italian", "name": "Italiano"},
    "ja_JP": {"name_en": "Japanese", "name": "\u65e5\u672c\u8a9e"},
    "ko_KR": {"name_en": "Korean", "name": "\ud55c\uad6d\uc5b4"},
    "lt_LT": {"name_en": "Lithuanian", "name": "Lietuvi\u0173"},
    "lv_LV": {"name_en": "Latvian", "name": "Latvie\u0161u"},
    "mk_MK": {
        "name_en": "Macedonian",
        "name": "\u041c\u0430\u043a\u0435\u0434\u043e\u043d\u0441\u043a\u0438",
    },
    "ml_IN": {"name_en": "Malayalam", "name": "\u0d2e\u0d32\u0d2f\u0d3e\u0d33\u0d02"},
    "ms_MY": {"name_en": "Malay", "name": "Bahasa Melayu"},
    "nb_NO": {"name_en": "Norwegian (bokmal)", "name": "Norsk (bokm\u00e5l)"},
    "nl_NL": {"name_en": "Dutch", "name": "Nederlands"},
    "nn_NO": {"name_en": "Norwegian (nynorsk)", "name": "Norsk (nynorsk)"},
    "pa_IN": {"name_en": "Punjabi", "name": "\u0a2a\u0a70\u0a1c\u0a3e\u0a2c\u0a40"},
    "pl_PL": {"name_en": "Polish", "name": "Polski"},
    "pt_BR": {"name_en": "Portuguese (Brazil)", "name": "Portugu\u00eas (Brasil)"},
    "pt_PT": {"name_en": "Portuguese (Portugal)", "name": "Portugu\u00eas (Portugal)"},
    "ro_RO": {"name_en": "Romanian", "name": "Rom\u00e2n\u0103"},
    "ru_RU": {"name_en": "Russian", "name": "\u0420\u0443\u0441\u0441\u043a\u0438\u0439"},
    "sk_SK": {"name_en": "Slovak", "name": "Sloven\u010dina"},
    "sl_SI": {"name_en": "Slovenian", "name": "Sloven\u0161\u010dina"},
    "sq_AL": {"name_en": "Albanian", "name": "Shqip"},
    "sr_RS": {"name_en": "Serbian", "name": "\u0421\u0440\u043f\u0441\u043a\u0438"},
    "sv_SE": {"name_en": "Swedish", "name": "Svenska"},
    "sw_KE": {"name_en": "Swahili", "name": "Kiswahili"},
    "ta_IN": {"name_en": "Tamil", "name": "\u0ba4\u0bae\u0bbf\u0bb4\u0bcd"},
    "te_IN": {"name_en": "Telugu", "name": "\u0c24\u0c46\u0c32\u0c41\u0c17\u0c41"},
    "th_TH": {"name_en": "Thai", "name": "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22"},
    "tl_PH": {"name_en": "Filipino", "name": "Filipino"},
    "tr_TR": {"name_en": "Turkish", "name": "T\u00fcrk\u00e7e"},
    "uk_UA": {
        "name_en": "Ukrainian",
        "name": "\u0423\u043a\u0440\u0430\u0457\u043d\u0441\u044c\u043a\u0430",
    },
    "vi_VN": {"name_en": "Vietnamese", "name": "Ti\u1ebfng Vi\u1ec7t"},
    "zh_CN": {"name_en": "Chinese (Simplified)", "name": "\u4e2d\u6587(\u7b80\u4f53)"},
    "zh_TW": {"name_en": "Chinese (Traditional)", "name": "\u4e2d\u6587(\u7e41\u9ad4)"},
}


def get(*locale_codes: str) -> "Locale":
    """The closest supported locale to the codes given, best first (default locale if none)."""
    return Locale.get_closest(*locale_codes)


def set_default_locale(code: str) -> None:
    """Make ``code`` the fallback locale (it is always supported)."""
    global _default_locale, _supported_locales
    _default_locale = code
    _supported_locales = frozenset(list(_translations) + [_default_locale])


def get_supported_locales() -> Iterable[str]:
    """Codes of every locale that has translations, plus the default locale."""
    return _supported_locales


def _detect_encoding(path: str) -> str:
    with open(path, "rb") as source:
        head = source.read(4)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    return "utf-8-sig"


def _read_csv_translations(path: str, encoding: str) -> Dict[str, Dict[str, str]]:
    tables: Dict[str, Dict[str, str]] = {}
    with open(path, encoding=encoding, newline="") as source:
        for line_number, row in enumerate(csv.reader(source), start=1):
            if not row or not any(cell.strip() for cell in row):
                continue
            cells = [cell.strip() for cell in row]
            if len(cells) < 2:
                _log.error("Missing translation in %s line %d: %r", path, line_number, row)
                continue
            message, translation = cells[0], cells[1]
            kind = (cells[2] if len(cells) > 2 else "") or "unknown"
            if kind not in _PLURAL_KINDS:
                _log.error(
                    "Unrecognized plural indicator %r in %s line %d", kind, path, line_number
                )
                continue
            tables.setdefault(kind, {})[message] = translation
    return tables


def _translations_loaded(use_gettext: bool) -> None:
    """Switch to the freshly loaded ``_translations``; cached locales hold the old ones."""
    global _supported_locales, _use_gettext
    _use_gettext = use_gettext
    _supported_locales = frozenset(list(_translations) + [_default_locale])
    Locale._cache = {}
    _log.debug("Supported locales: %s", sorted(_supported_locales))


def load_translations(directory: str, encoding: Optional[str] = None) -> None:
    """Load ``<locale>.csv`` files from ``directory``.

    Each row is ``message, translation[, plural|singular]``; messages use Python
    ``%(name)s`` placeholders. Without ``encoding``, UTF-16 (with BOM) and UTF-8
    (with or without BOM) are recognised. Bad rows are logged with file and line.
    """
    global _translations
    _translations = {}
    for filename in sorted(os.listdir(directory)):
        if not filename.endswith(".csv"):
            continue
        code = filename[: -len(".csv")]
        path = os.path.join(directory, filename)
        if not _CSV_LOCALE_CODE.match(code):
            _log.error("Unrecognized locale %r (path: %s)", code, path)
            continue
        try:
            tables = _read_csv_translations(path, encoding or _detect_encoding(path))
        except (OSError, UnicodeError, csv.Error) as exc:
            _log.error("Cannot load translations from %s: %s", path, exc)
            continue
        _translations[code] = tables
    _translations_loaded(use_gettext=False)


def load_gettext_translations(directory: str, domain: str) -> None:
    """Load gettext catalogs ``<directory>/<locale>/LC_MESSAGES/<domain>.mo``."""
    global _translations
    _translations = {}
    for code in sorted(os.listdir(directory)):
        if code.startswith(".") or not os.path.isdir(os.path.join(directory, code)):
            continue
        catalog = os.path.join(directory, code, "LC_MESSAGES", domain + ".mo")
        if not os.path.isfile(catalog):
            continue
        try:
            _translations[code] = gettext.translation(domain, directory, languages=[code])
        except Exception as exc:
            _log.error("Cannot load translation for '%s': %s", code, exc)
    _translations_loaded(use_gettext=True)


_RIGHT_TO_LEFT_PREFIXES = ("fa", "ar", "he")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_ONE_DAY = datetime.timedelta(days=1)
# format_date's ages under a day, relative: (below this many seconds, seconds per unit,
# singular message, plural message, placeholder). The messages are the catalog keys of
# Tornado's documented locale API, so existing translations apply.
_AGO_UNITS = (
    (50, 1, "1 second ago", "%(seconds)d seconds ago", "seconds"),
    (50 * 60, 60, "1 minute ago", "%(minutes)d minutes ago", "minutes"),
    (None, 3600, "1 hour ago", "%(hours)d hours ago", "hours"),
)
# format_date's absolute styles: (shorter=True message, full message), same catalog keys.
_DATE_STYLES = {
    "time": ("%(time)s", "%(time)s"),
    "yesterday": ("yesterday", "yesterday at %(time)s"),
    "weekday": ("%(weekday)s", "%(weekday)s at %(time)s"),
    "month_day": ("%(month_name)s %(day)s", "%(month_name)s %(day)s at %(time)s"),
    "full": ("%(month_name)s %(day)s, %(year)s", "%(month_name)s %(day)s, %(year)s at %(time)s"),
}


def _aware_utc(date: Union[int, float, datetime.datetime]) -> datetime.datetime:
    """A timestamp or datetime as an aware datetime; naive datetimes are taken as UTC."""
    if isinstance(date, (int, float)):
        return datetime.datetime.fromtimestamp(date, datetime.timezone.utc)
    if date.tzinfo is None:
        return date.replace(tzinfo=datetime.timezone.utc)
    return date


class Locale:
    """A language: translates messages and formats dates, lists and numbers.

    The base class leaves messages untranslated; ``CSVLocale`` and ``GettextLocale``
    look them up in loaded translations.
    """

    _cache: Dict[str, "Locale"] = {}

    @classmethod
    def get_closest(cls, *locale_codes: str) -> "Locale":
        """The first supported code (``fr-fr`` matches ``fr_FR``, ``fr_CA`` falls back
        to ``fr``), else the default locale."""
        for code in locale_codes:
            if not code:
                continue
            parts = code.replace("-", "_").split("_")
            if len(parts) > 2:
                continue
            language = parts[0].lower()
            if len(parts) == 2:
                full = f"{language}_{parts[1].upper()}"
                if full in _supported_locales:
                    return cls.get(full)
            if language in _supported_locales:
                return cls.get(language)
        return cls.get(_default_locale)

    @classmethod
    def get(cls, code: str) -> "Locale":
        """The locale for ``code``, which must be a supported code (cached)."""
        locale = cls._cache.get(code)
        if locale is not None:
            return locale
        if code not in _supported_locales:
            raise ValueError(f"unsupported locale {code!r}; use get() to pick the closest one")
        table = _translations.get(code)
        made: Locale
        if table is not None and _use_gettext:
            made = GettextLocale(code, table)
        else:
            # The default locale may have no file of its own: it speaks messages as written.
            made = CSVLocale(code, table or {})
        return cls._cache.setdefault(code, made)

    def __init__(self, code: str) -> None:
        self.code = code
        self.name: str = LOCALE_NAMES.get(code, {}).get("name", "Unknown")
        self.rtl = code.startswith(_RIGHT_TO_LEFT_PREFIXES)
        # Translated once; format_date and format_day index them.
        self._months = [self.translate(month) for month in _MONTHS]
        self._weekdays = [self.translate(day) for day in _WEEKDAYS]

    def translate(
        self, message: str, plural_message: Optional[str] = None, count: Optional[int] = None
    ) -> str:
        """``message`` translated; with ``plural_message``, ``count`` picks the form."""
        if plural_message is not None and count != 1:
            return plural_message
        return message

    def pgettext(
        self,
        context: str,
        message: str,
        plural_message: Optional[str] = None,
        count: Optional[int] = None,
    ) -> str:
        """Like ``translate``, for a message whose meaning depends on ``context``."""
        return self.translate(message, plural_message, count)

    def format_date(
        self,
        date: Union[int, float, datetime.datetime],
        gmt_offset: int = 0,
        relative: bool = True,
        shorter: bool = False,
        full_format: bool = False,
    ) -> str:
        """A human-readable date: "2 minutes ago", "yesterday at 5:30 pm", ...

        ``date`` is a UTC timestamp or datetime (naive ones are taken as UTC);
        ``gmt_offset`` is the viewer's offset from UTC in minutes (UTC minus local time).
        Dates in the future are shown in full.
        """
        moment = _aware_utc(date)
        now = datetime.datetime.now(datetime.timezone.utc)
        if moment > now:
            # A few seconds ahead is clock skew between machines: "just now". Further
            # ahead, relative words ("ago", "yesterday") would be wrong.
            if relative and (moment - now).total_seconds() < 60:
                moment = now
            else:
                full_format = True
        age = now - moment
        if relative and not full_format and age.days == 0:
            return self._time_ago(age.seconds)
        shift = datetime.timedelta(minutes=gmt_offset)
        local, local_now = moment - shift, now - shift
        if full_format:
            style = "full"
        elif age.days == 0:
            style = "time"
        elif age.days == 1 and relative and (local_now - _ONE_DAY).day == local.day:
            style = "yesterday"
        elif age.days < 5:
            style = "weekday"
        elif age.days < 334:
            # The year goes unsaid under eleven months; at twelve, "March 3" could mean
            # either of two years.
            style = "month_day"
        else:
            style = "full"
        short, long = _DATE_STYLES[style]
        return self.translate(short if shorter else long) % {
            "month_name": self._months[local.month - 1],
            "weekday": self._weekdays[local.weekday()],
            "day": str(local.day),
            "year": str(local.year),
            "time": self._clock_time(local),
        }

    def _time_ago(self, seconds: int) -> str:
        """"N seconds/minutes/hours ago" for an age under a day."""
        for below, unit, singular, plural, key in _AGO_UNITS:
            if below is None or seconds < below:
                amount = round(seconds / unit)
                return self.translate(singular, plural, amount) % {key: amount}
        raise AssertionError("the last unit has no upper bound")

    def _clock_time(self, moment: datetime.datetime) -> str:
        hour, minute = moment.hour, moment.minute
        twelve_hour = hour % 12 or 12
        if self.code in ("en", "en_US"):
            return "%d:%02d %s" % (twelve_hour, minute, "pm" if hour >= 12 else "am")
        if self.code == "zh_CN":
            return "%s%d:%02d" % (
                "\u4e0b\u5348" if hour >= 12 else "\u4e0a\u5348",
                twelve_hour,
                minute,
            )
        return "%d:%02d" % (hour, minute)

    def format_day(self, date: datetime.datetime, gmt_offset: int = 0, dow: bool = True) -> str:
        """The day of ``date``: "Monday, January 22" (or "January 22" without ``dow``)."""
        local_date = date - datetime.timedelta(minutes=gmt_offset)
        _ = self.translate
        values = {
            "month_name": self._months[local_date.month - 1],
            "weekday": self._weekdays[local_date.weekday()],
            "day": str(local_date.day),
        }
        if dow:
            return _("%(weekday)s, %(month_name)s %(day)s") % values
        return _("%(month_name)s %(day)s") % values

    def list(self, parts: Any) -> str:
        """Join items for a sentence: "A, B and C"."""
        items = [item for item in parts]
        if not items:
            return ""
        if len(items) == 1:
            return items[0]  # type: ignore[no-any-return]
        separator = " \u0648 " if self.code.startswith("fa") else ", "
        return self.translate("%(commas)s and %(last)s") % {
            "commas": separator.join(items[:-1]),
            "last": items[-1],
        }

    def friendly_number(self, value: int) -> str:
        """``value`` with thousands separators ("1,000,000") in English locales."""
        if self.code not in ("en", "en_US"):
            return str(value)
        if isinstance(value, int):
            return f"{value:,}"
        text = str(value)
        sign = "-" if text.startswith("-") else ""
        whole, dot, fraction = text.lstrip("-").partition(".")
        if not whole.isdigit():
            return text
        return f"{sign}{int(whole):,}{dot}{fraction}"


def _needs_count(count: Optional[int], method: str) -> int:
    if count is None:
        raise ValueError(f"{method}() with a plural message needs a count")
    return count


class CSVLocale(Locale):
    """A locale whose translations come from a CSV file (no message contexts)."""

    def __init__(self, code: str, translations: Dict[str, Dict[str, str]]) -> None:
        self.translations = translations
        super().__init__(code)

    def translate(
        self, message: str, plural_message: Optional[str] = None, count: Optional[int] = None
    ) -> str:
        # A CSV row says which form it translates; rows that say nothing are "unknown".
        if plural_message is None:
            form = "unknown"
        elif _needs_count(count, "translate") == 1:
            form = "singular"
        else:
            form, message = "plural", plural_message
        return self.translations.get(form, {}).get(message, message)

    def pgettext(
        self, context: str, message: str,
        plural_message: Optional[str] = None, count: Optional[int] = None,
    ) -> str:
        # CSV files have no column for a context; it is dropped, with a word in the log
        # when there are translations it might have chosen between.
        if self.translations:
            _log.warning("pgettext is not supported by CSVLocale; context %r ignored", context)
        return self.translate(message, plural_message, count)


class GettextLocale(Locale):
    """A locale backed by a ``gettext`` translations object."""

    def __init__(self, code: str, translations: gettext.NullTranslations) -> None:
        # Locale.__init__ translates the month and day names, so these come first.
        self.gettext = translations.gettext
        self.ngettext = translations.ngettext
        super().__init__(code)

    def translate(
        self, message: str, plural_message: Optional[str] = None, count: Optional[int] = None
    ) -> str:
        if plural_message is None:
            return self.gettext(message)
        return self.ngettext(message, plural_message, _needs_count(count, "translate"))

    def pgettext(
        self, context: str, message: str,
        plural_message: Optional[str] = None, count: Optional[int] = None,
    ) -> str:
        """Translate ``message`` in ``context``; falls back to the context-free message.

        Catalog keys are ``context + CONTEXT_SEPARATOR + message`` (gettext's msgctxt).
        """
        key = context + CONTEXT_SEPARATOR
        if plural_message is None:
            found = self.gettext(key + message)
            # gettext answers a missing key with the key itself, separator included.
            return message if CONTEXT_SEPARATOR in found else found
        n = _needs_count(count, "pgettext")
        found = self.ngettext(key + message, key + plural_message, n)
        if CONTEXT_SEPARATOR in found:
            return self.ngettext(message, plural_message, n)
        return found
