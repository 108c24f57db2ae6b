"""The pages' words: Vietnamese first (the operator's language), English on request.

    t = translator("vi")
    t("receivers.title")                      -> "Cụm loa"
    t("receivers.summary", online=3, total=4) -> "3/4 cụm loa trực tuyến"

Every key lives in ``catalog.MESSAGES`` with both languages side by side, so a missing
translation is visible in one place (and a test checks none is empty). An unknown key raises
``KeyError``: a typo in a template fails the page tests instead of showing a raw key.
"""

from headend.i18n.catalog import MESSAGES

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English"}


def pick_language(value: str | None) -> str:
    """A supported language code from a cookie or query value, else Vietnamese."""
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


class Translator:
    def __init__(self, language: str):
        self.language = pick_language(language)
        self._column = LANGUAGES.index(self.language)

    def __call__(self, key: str, **values) -> str:
        text = MESSAGES[key][self._column]
        return text.format(**values) if values else text

    def maybe(self, prefix: str, value: str | None, default: str = "") -> str:
        """The translation of ``prefix.value`` (a state, a reason), or the value itself when
        the catalog has no entry (a new reason from a newer firmware still shows)."""
        if value is None:
            return default
        key = "%s.%s" % (prefix, value)
        return self(key) if key in MESSAGES else value


def translator(language: str | None) -> Translator:
    return Translator(pick_language(language))
