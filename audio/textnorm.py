"""Vietnamese text normalisation before speech synthesis.

A commune bulletin is typed the way it is printed: "Lúc 17h30 ngày 15/11/2026, UBND xã ...,
lượng mưa 150mm, gọi 0912 345 678". A speech engine reads such text badly ("17h30" comes out as
"mười bảy hát ba mươi", "UBND" is spelled in English), so ``normalize_vi`` writes every such
form out as the words an announcer would say.

Where Vietnamese usage varies, this module picks one reading and sticks to it:

- a zero tens digit after hundreds is "linh" (northern broadcast usage), not "lẻ":
  105 -> "một trăm linh năm", 2026 -> "hai nghìn không trăm hai mươi sáu";
- the units digit after a tens digit of 2 or more: 1 is "mốt", 4 is "tư", 5 is "lăm"
  (21 "hai mươi mốt", 24 "hai mươi tư", 25 "hai mươi lăm"); after 10 only 5 changes
  (15 "mười lăm", 14 "mười bốn");
- thousands are "nghìn" (not "ngàn"), 10^9 is "tỷ", 10^12 "nghìn tỷ"; an all-zero group is
  skipped and a later non-zero group is read in full: 1.000.005 -> "một triệu không trăm
  linh năm";
- the decimal mark is the Vietnamese comma ("37,5" -> "ba mươi bảy phẩy năm"); a dot followed
  by groups of exactly three digits is a thousands separator ("1.000.000" -> "một triệu"),
  any other dot between digits is a decimal mark too; the fraction is read as a number, or
  digit by digit when it starts with 0 or has more than three digits;
- dates: d/m/yyyy (also with "." or "-"), d/m and m/yyyy with a valid day and month; days 1
  to 10 take "mùng" ("ngày mùng năm tháng tư"), month 4 is "tư". A fraction written "1/2"
  therefore reads as a date: write "một phần hai" where that matters;
- clock times drop zero minutes ("7h00" -> "bảy giờ");
- phone numbers are read digit by digit with a comma (a short pause) between the groups as
  written, or 4-3-3 / 3-4-4 when written without spaces;
- units are read with their usual Vietnamese spelling (mm -> "mi-li-mét", km/h ->
  "ki-lô-mét trên giờ", °C -> "độ xê"), but only right after a number;
- Roman numerals are left alone.
"""

import re
import unicodedata

DIGITS = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")
_UNITS_AFTER_TENS = {1: "mốt", 4: "tư", 5: "lăm"}
_BILLION = 10**9
_GROUPS = ((10**6, "triệu"), (10**3, "nghìn"), (1, ""))

# Abbreviations of commune bulletins, matched case-sensitively as whole words (longest first).
ABBREVIATIONS = {
    "UBND": "Ủy ban nhân dân",
    "HĐND": "Hội đồng nhân dân",
    "UBMTTQ": "Ủy ban Mặt trận Tổ quốc",
    "MTTQ": "Mặt trận Tổ quốc",
    "HTX": "hợp tác xã",
    "BCH": "Ban chỉ huy",
    "BQL": "Ban quản lý",
    "PCCC&CNCH": "phòng cháy chữa cháy và cứu nạn cứu hộ",
    "PCCC": "phòng cháy chữa cháy",
    "CNCH": "cứu nạn cứu hộ",
    "PCTT&TKCN": "phòng chống thiên tai và tìm kiếm cứu nạn",
    "PCTT": "phòng chống thiên tai",
    "TKCN": "tìm kiếm cứu nạn",
    "NN&PTNT": "Nông nghiệp và Phát triển nông thôn",
    "TN&MT": "Tài nguyên và Môi trường",
    "KTTV": "khí tượng thủy văn",
    "SĐT": "số điện thoại",
    "ĐT": "điện thoại",
    "TP.HCM": "Thành phố Hồ Chí Minh",
    "TPHCM": "Thành phố Hồ Chí Minh",
    "HCM": "Hồ Chí Minh",
    "TP": "thành phố",
    "Tp": "thành phố",
    "TT": "thị trấn",
    "TDP": "tổ dân phố",
    "KDC": "khu dân cư",
    "KCN": "khu công nghiệp",
    "NTM": "nông thôn mới",
    "QL": "quốc lộ",
    "QĐ": "quyết định",
    "PCT": "phó chủ tịch",
    "GĐ": "giám đốc",
    "PGĐ": "phó giám đốc",
    "BHYT": "bảo hiểm y tế",
    "BHXH": "bảo hiểm xã hội",
    "THCS": "trung học cơ sở",
    "THPT": "trung học phổ thông",
    "CSGT": "cảnh sát giao thông",
    "ATGT": "an toàn giao thông",
    "ATTP": "an toàn thực phẩm",
    "ĐBQH": "đại biểu Quốc hội",
    "CCB": "cựu chiến binh",
    "LHPN": "Liên hiệp Phụ nữ",
    "TW": "Trung ương",
    "VN": "Việt Nam",
    "v/v": "về việc",
    "V/v": "về việc",
    "Đ/c": "đồng chí",
    "đ/c": "đồng chí",
}

# Units read only right after a number (longest first inside the regex).
UNITS = {
    "km/h": "ki-lô-mét trên giờ",
    "m/s": "mét trên giây",
    "km²": "ki-lô-mét vuông",
    "km2": "ki-lô-mét vuông",
    "m²": "mét vuông",
    "m2": "mét vuông",
    "m³": "mét khối",
    "m3": "mét khối",
    "km": "ki-lô-mét",
    "cm": "xen-ti-mét",
    "mm": "mi-li-mét",
    "m": "mét",
    "kg": "ki-lô-gam",
    "g": "gam",
    "ml": "mi-li-lít",
    "ha": "héc-ta",
    "kWh": "ki-lô-oát giờ",
    "°C": "độ xê",
    "ºC": "độ xê",
    "oC": "độ xê",
    "°": "độ",
    "%": "phần trăm",
    "VNĐ": "đồng",
    "VND": "đồng",
    "đ": "đồng",
    "USD": "đô la Mỹ",
}


def _alternation(words):
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


# --- numbers ---------------------------------------------------------------------------------

def _three_digits(n, full):
    """Words for 0 <= n < 1000; ``full`` reads "không trăm" / "linh" as inside a larger number."""
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    words = []
    if full or hundreds:
        words += [DIGITS[hundreds], "trăm"]
    if tens == 0:
        if units:
            if words:
                words.append("linh")
            words.append(DIGITS[units])
    elif tens == 1:
        words.append("mười")
        if units:
            words.append("lăm" if units == 5 else DIGITS[units])
    else:
        words += [DIGITS[tens], "mươi"]
        if units:
            words.append(_UNITS_AFTER_TENS.get(units, DIGITS[units]))
    return words


def _integer_words(n, full):
    if n >= _BILLION:
        high, low = divmod(n, _BILLION)
        words = _integer_words(high, full) + ["tỷ"]
        return words + _integer_words(low, True) if low else words
    words = []
    for scale, name in _GROUPS:
        group = (n // scale) % 1000
        if group:
            words += _three_digits(group, full)
            if name:
                words.append(name)
            full = True
    return words


def number_to_words(n):
    """Read an integer in Vietnamese: 21 -> "hai mươi mốt",
    1005 -> "một nghìn không trăm linh năm"."""
    if n < 0:
        return "âm " + number_to_words(-n)
    if n == 0:
        return DIGITS[0]
    return " ".join(_integer_words(n, False))


def digits_to_words(digits):
    """Read a string of digits one by one: "0912" -> "không chín một hai"."""
    return " ".join(DIGITS[int(d)] for d in digits if d.isdigit())


def _integer_string_words(text):
    # Codes with leading zeros ("007") and very long digit strings are read digit by digit.
    if (len(text) > 2 and text[0] == "0") or len(text) > 15:
        return digits_to_words(text)
    return number_to_words(int(text))


def _fraction_words(text):
    if text[0] == "0" or len(text) > 3:
        return digits_to_words(text)
    return number_to_words(int(text))


def decimal_to_words(integer, fraction=None):
    words = _integer_string_words(integer)
    if fraction:
        words += " phẩy " + _fraction_words(fraction)
    return words


# --- substitution helper ---------------------------------------------------------------------

def _sub(pattern, make_words, text):
    """re.sub that keeps a space between the words produced and letters or digits around them."""

    def replace(match):
        words = make_words(match)
        if words is None:
            return match.group(0)
        before = match.string[match.start() - 1] if match.start() else ""
        after = match.string[match.end()] if match.end() < len(match.string) else ""
        if before.isalnum():
            words = " " + words
        if after.isalnum():
            words += " "
        return words

    return pattern.sub(replace, text)


# --- rules, applied in order -----------------------------------------------------------------

# Followed by anything but a letter, so "QL1A" reads "quốc lộ một A".
_ABBREVIATION_RE = re.compile(r"(?<!\w)(%s)(?![^\W\d_])" % _alternation(ABBREVIATIONS))
# "TP. Huế", "TT.Phú Xuyên": the dot after these abbreviations is not a sentence end.
_ABBREVIATION_DOT_RE = re.compile(r"(?<!\w)(TP|Tp|TT)\.(?=\s*\w)")
_AMPERSAND_RE = re.compile(r"\s*&\s*")
# Short service numbers (113 police, 114 fire, 115 ambulance) after "gọi" are said digit by digit.
_HOTLINE_RE = re.compile(
    r"(?<!\w)(gọi|Gọi|hotline|đường dây nóng)(\s+(?:số\s+)?)(1\d\d)(?![\d.,]\d)")

_DAY_PREFIX = r"(?:(?<!\w)([Nn]gày)\s+)?"
_DAY_RANGE_RE = re.compile(
    _DAY_PREFIX + r"(?<![\d/.])(\d{1,2})\s*[-–]\s*(\d{1,2})/(\d{1,2})(?:/(\d{4}))?(?![\d/])")
_FULL_DATE_RE = re.compile(
    _DAY_PREFIX + r"(?<![\d/.-])(\d{1,2})([/.-])(\d{1,2})\3(\d{4})(?!\d|[/.-]\d)")
_MONTH_YEAR_RE = re.compile(r"(?:(?<!\w)([Tt]háng)\s+)?(?<![\d/.])(\d{1,2})/(\d{4})(?![\d/])")
_DAY_MONTH_RE = re.compile(_DAY_PREFIX + r"(?<![\d/.])(\d{1,2})/(\d{1,2})(?![\d/])")

_PHONE_RE = re.compile(
    r"(?<![\w+.,])(?:"
    r"(?:\+84[ .]?|0)[1-9]\d{1,2}(?:[ .-]\d{3,4}){2}"  # 0912 345 678, 024 3825 1234, +84 912 ...
    r"|\+84\s?\d{9,10}|0[1-9]\d{8,9}"  # unspaced
    r")(?![\w]|[.,]\d)")

# "50.000đ/người", "10 tấn/ha": a slash before these words means "per", said "một".
_PER_WORDS = ("người", "hộ", "khẩu", "suất", "con", "sào", "tấn", "lít", "tháng", "năm", "ngày",
              "giờ", "lần", "kg", "ha", "m2", "m²", "km")
_PER_RE = re.compile(r"(?<=[^\W_])\s?/\s?(%s)(?!\w)" % _alternation(_PER_WORDS))
_RANGE_RE = re.compile(r"(?:(?<=\d)|(?<=\d[hg%]))\s*[-–]\s*(?=\d)")
_HYPHEN_BEFORE_NUMBER_RE = re.compile(r"(?<=[^\W\d_])-(?=\d)")  # "COVID-19"
_TIME_H_RE = re.compile(r"(?<![\w.,])(\d{1,2})(?:h(\d{2})?|g(\d{2}))(?!\w)")
_TIME_COLON_RE = re.compile(r"(?<![\d:.,])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\d:])")

_ORDINAL_RE = re.compile(r"(?<!\w)([Tt]hứ)\s+([14])(?![\d.,])")
_APRIL_RE = re.compile(r"(?<!\w)([Tt]háng)\s+(0?4)(?![\d.,/])")
_NEGATIVE_RE = re.compile(r"(?:(?<=\s)|(?<=^)|(?<=\())-(?=\d)")
_NUMBER_RE = re.compile(
    r"(?<![\d.,])(?:"
    r"(?P<grouped>\d{1,3}(?:\.\d{3})+|\d{1,3}(?:,\d{3}){2,})(?:,(?P<gfrac>\d+))?"
    r"|(?P<int>\d+)(?:[.,](?P<frac>\d+))?"
    r")(?!\d)(?:\s?(?P<unit>%s)(?!\w))?" % _alternation(UNITS))
_DEGREE_C_RE = re.compile(r"(?<=độ )C(?!\w)")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+([,.;:!?)])")
_SPACES_RE = re.compile(r"[ \t]+")


def _day_words(day):
    words = number_to_words(day)
    return "mùng " + words if day <= 10 else words


def _month_words(month):
    return "tư" if month == 4 else number_to_words(month)


def _valid_date(day, month):
    return 1 <= day <= 31 and 1 <= month <= 12


def _day_range(m):
    first, last, month = int(m.group(2)), int(m.group(3)), int(m.group(4))
    if not (_valid_date(first, month) and _valid_date(last, month) and first < last):
        return None
    words = "%s %s đến %s tháng %s" % (m.group(1) or "ngày", _day_words(first), _day_words(last),
                                       _month_words(month))
    if m.group(5):
        words += " năm " + number_to_words(int(m.group(5)))
    return words


def _full_date(m):
    day, month = int(m.group(2)), int(m.group(4))
    if not _valid_date(day, month):
        return None
    return "%s %s tháng %s năm %s" % (m.group(1) or "ngày", _day_words(day), _month_words(month),
                                      number_to_words(int(m.group(5))))


def _month_year(m):
    month = int(m.group(2))
    if not 1 <= month <= 12:
        return None
    return "%s %s năm %s" % (m.group(1) or "tháng", _month_words(month),
                             number_to_words(int(m.group(3))))


def _day_month(m):
    day, month = int(m.group(2)), int(m.group(3))
    if not _valid_date(day, month):
        return None
    return "%s %s tháng %s" % (m.group(1) or "ngày", _day_words(day), _month_words(month))


def _phone_groups(digits):
    """Group an unspaced number the way it is usually written: 0912 345 678, 024 3825 1234,
    and after +84: 84 912 345 678."""
    if digits.startswith("84") and len(digits) in (11, 12):
        return ["84"] + _phone_groups(digits[2:])
    if len(digits) == 9:
        cuts = (3, 6)
    elif len(digits) == 10:
        cuts = (4, 7) if digits[0] == "0" else (3, 6)
    else:
        cuts = (3, 7)
    return [digits[:cuts[0]], digits[cuts[0]:cuts[1]], digits[cuts[1]:]]


def _phone(m):
    text = m.group(0)
    prefix = ""
    if text.startswith("+"):
        prefix, text = "cộng ", text[1:]
    groups = re.split(r"[ .-]+", text.strip())
    if len(groups) == 1:
        groups = _phone_groups(groups[0])
    elif prefix and len(groups) == 2:  # "+84 912345678"
        groups = groups[:1] + _phone_groups(groups[1])
    return prefix + ", ".join(digits_to_words(g) for g in groups if g)


def _clock(hours, minutes, seconds=None):
    hour = int(hours)
    if hour > 24 or (minutes and int(minutes) > 59) or (seconds and int(seconds) > 59):
        return None
    words = number_to_words(hour) + " giờ"
    if minutes and int(minutes):
        words += " " + number_to_words(int(minutes)) + " phút"
    if seconds and int(seconds):
        words += " " + number_to_words(int(seconds)) + " giây"
    return words


def _number(m):
    if m.group("grouped"):
        integer = re.sub(r"[.,]", "", m.group("grouped"))
        words = decimal_to_words(integer, m.group("gfrac"))
    else:
        words = decimal_to_words(m.group("int"), m.group("frac"))
    if m.group("unit"):
        words += " " + UNITS[m.group("unit")]
    return words


def normalize_vi(text):
    """Write dates, times, numbers, phone numbers, units and abbreviations out as words."""
    text = unicodedata.normalize("NFC", text)
    text = _ABBREVIATION_DOT_RE.sub(lambda m: m.group(1), text)
    text = _sub(_ABBREVIATION_RE, lambda m: ABBREVIATIONS[m.group(1)], text)
    text = _AMPERSAND_RE.sub(" và ", text)
    text = _sub(_HOTLINE_RE, lambda m: m.group(1) + m.group(2) + digits_to_words(m.group(3)), text)
    text = _sub(_DAY_RANGE_RE, _day_range, text)
    text = _sub(_FULL_DATE_RE, _full_date, text)
    text = _sub(_MONTH_YEAR_RE, _month_year, text)
    text = _sub(_DAY_MONTH_RE, _day_month, text)
    text = _sub(_PHONE_RE, _phone, text)
    text = _PER_RE.sub(lambda m: " một " + UNITS.get(m.group(1), m.group(1)), text)
    text = _RANGE_RE.sub(" đến ", text)
    text = _HYPHEN_BEFORE_NUMBER_RE.sub(" ", text)
    text = _sub(_TIME_H_RE, lambda m: _clock(m.group(1), m.group(2) or m.group(3)), text)
    text = _sub(_TIME_COLON_RE, lambda m: _clock(m.group(1), m.group(2), m.group(3)), text)
    text = _ORDINAL_RE.sub(lambda m: m.group(1) + (" nhất" if m.group(2) == "1" else " tư"), text)
    text = _APRIL_RE.sub(lambda m: m.group(1) + " tư", text)
    text = _NEGATIVE_RE.sub("âm ", text)
    text = _sub(_NUMBER_RE, _number, text)
    text = _DEGREE_C_RE.sub("xê", text)
    text = _SPACES_RE.sub(" ", text)
    text = _SPACE_BEFORE_PUNCT_RE.sub(r"\1", text)
    return "\n".join(line.strip() for line in text.split("\n"))
