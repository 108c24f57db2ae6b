"""Vietnamese text normalisation, word for word: what the announcer's voice will say."""

import pytest

from audio.textnorm import normalize_vi, number_to_words

CASES = [
    # dates
    ("15/11/2026", "ngày mười lăm tháng mười một năm hai nghìn không trăm hai mươi sáu"),
    ("ngày 15/11/2026", "ngày mười lăm tháng mười một năm hai nghìn không trăm hai mươi sáu"),
    ("Ngày 5/4/2026", "Ngày mùng năm tháng tư năm hai nghìn không trăm hai mươi sáu"),
    ("01-12-2025", "ngày mùng một tháng mười hai năm hai nghìn không trăm hai mươi lăm"),
    ("15.11.2026", "ngày mười lăm tháng mười một năm hai nghìn không trăm hai mươi sáu"),
    ("bản tin ngày 20/11.", "bản tin ngày hai mươi tháng mười một."),
    ("tháng 11/2026", "tháng mười một năm hai nghìn không trăm hai mươi sáu"),
    ("ngày 14-16/11", "ngày mười bốn đến mười sáu tháng mười một"),
    ("32/13/2026", "ba mươi hai/mười ba/hai nghìn không trăm hai mươi sáu"),
    # times
    ("17h30", "mười bảy giờ ba mươi phút"),
    ("5h sáng", "năm giờ sáng"),
    ("17:30", "mười bảy giờ ba mươi phút"),
    ("7h00", "bảy giờ"),
    ("17h05", "mười bảy giờ năm phút"),
    ("17g30", "mười bảy giờ ba mươi phút"),
    ("6:05:09", "sáu giờ năm phút chín giây"),
    ("từ 7h-11h", "từ bảy giờ đến mười một giờ"),
    ("(lúc 0h)", "(lúc không giờ)"),
    # numbers
    ("1", "một"),
    ("10", "mười"),
    ("11", "mười một"),
    ("14", "mười bốn"),
    ("15", "mười lăm"),
    ("21", "hai mươi mốt"),
    ("24", "hai mươi tư"),
    ("25", "hai mươi lăm"),
    ("105", "một trăm linh năm"),
    ("110", "một trăm mười"),
    ("1005", "một nghìn không trăm linh năm"),
    ("2026", "hai nghìn không trăm hai mươi sáu"),
    ("1.000.000", "một triệu"),
    ("1.000.005", "một triệu không trăm linh năm"),
    ("1.500.000đ", "một triệu năm trăm nghìn đồng"),
    ("3.000.000.000", "ba tỷ"),
    ("1.200 hộ, 3.450 khẩu", "một nghìn hai trăm hộ, ba nghìn bốn trăm năm mươi khẩu"),
    ("37,5", "ba mươi bảy phẩy năm"),
    ("3,05", "ba phẩy không năm"),
    ("năm 2025-2026",
     "năm hai nghìn không trăm hai mươi lăm đến hai nghìn không trăm hai mươi sáu"),
    ("thứ 4", "thứ tư"),
    ("tháng 4", "tháng tư"),
    ("COVID-19", "COVID mười chín"),
    # phone numbers
    ("0912 345 678", "không chín một hai, ba bốn năm, sáu bảy tám"),
    ("0912345678", "không chín một hai, ba bốn năm, sáu bảy tám"),
    ("SĐT: 0987.654.321", "số điện thoại: không chín tám bảy, sáu năm bốn, ba hai một"),
    ("024 3825 1234", "không hai bốn, ba tám hai năm, một hai ba bốn"),
    ("+84 912 345 678", "cộng tám bốn, chín một hai, ba bốn năm, sáu bảy tám"),
    ("gọi 114", "gọi một một bốn"),
    # units
    ("lượng mưa 150mm", "lượng mưa một trăm năm mươi mi-li-mét"),
    ("gió 60 km/h", "gió sáu mươi ki-lô-mét trên giờ"),
    ("37,5°C", "ba mươi bảy phẩy năm độ xê"),
    ("nhiệt độ -5°C", "nhiệt độ âm năm độ xê"),
    ("20-25oC", "hai mươi đến hai mươi lăm độ xê"),
    ("35 độ C", "ba mươi lăm độ xê"),
    ("50%", "năm mươi phần trăm"),
    ("2,5%", "hai phẩy năm phần trăm"),
    ("30ha lúa", "ba mươi héc-ta lúa"),
    ("cách 12 km", "cách mười hai ki-lô-mét"),
    ("cao 3m", "cao ba mét"),
    ("25kg gạo", "hai mươi lăm ki-lô-gam gạo"),
    ("500.000 VNĐ/người", "năm trăm nghìn đồng một người"),
    ("6 tấn/ha", "sáu tấn một héc-ta"),
    # abbreviations
    ("UBND xã", "Ủy ban nhân dân xã"),
    ("HĐND huyện", "Hội đồng nhân dân huyện"),
    ("HTX Thành Công", "hợp tác xã Thành Công"),
    ("TP. Huế", "thành phố Huế"),
    ("Tp Vinh", "thành phố Vinh"),
    ("TT Phú Xuyên", "thị trấn Phú Xuyên"),
    ("BCH PCTT&TKCN", "Ban chỉ huy phòng chống thiên tai và tìm kiếm cứu nạn"),
    ("đội PCCC", "đội phòng cháy chữa cháy"),
    ("V/v phòng chống bão", "về việc phòng chống bão"),
    ("Đ/c Nguyễn Văn A", "đồng chí Nguyễn Văn A"),
    ("QL1A", "quốc lộ một A"),
    ("TP.HCM", "Thành phố Hồ Chí Minh"),
    # text with nothing to expand is left as it is
    ("Bà con chú ý!", "Bà con chú ý!"),
]


@pytest.mark.parametrize("text, spoken", CASES, ids=[c[0] for c in CASES])
def test_normalize_vi_reads_as_an_announcer_would(text, spoken):
    assert normalize_vi(text) == spoken


def test_table_is_large_enough_for_the_issue():
    assert len(CASES) >= 40


def test_a_whole_bulletin_sentence_has_no_digits_left():
    text = ("Lúc 17h30 ngày 15/11/2026, UBND xã thông báo: bão số 13 cách đất liền 120km, "
            "gió giật cấp 12 (118-133 km/h), mưa 150-200mm. Liên hệ SĐT 0912 345 678.")
    spoken = normalize_vi(text)
    assert not any(ch.isdigit() for ch in spoken)
    assert spoken.startswith("Lúc mười bảy giờ ba mươi phút ngày mười lăm tháng mười một năm hai "
                             "nghìn không trăm hai mươi sáu, Ủy ban nhân dân xã thông báo: bão số "
                             "mười ba cách đất liền một trăm hai mươi ki-lô-mét")
    assert "một trăm mười tám đến một trăm ba mươi ba ki-lô-mét trên giờ" in spoken
    assert spoken.endswith("số điện thoại không chín một hai, ba bốn năm, sáu bảy tám.")


def test_decomposed_unicode_input_is_recomposed():
    decomposed = "UBND xa\u0303"  # "xã" typed with a combining tilde, as some keyboards do
    assert normalize_vi(decomposed) == "Ủy ban nhân dân xã"


def test_large_and_negative_integers():
    assert number_to_words(1_000_000_000_005) == "một nghìn tỷ không trăm linh năm"
    assert number_to_words(-21) == "âm hai mươi mốt"
    assert number_to_words(0) == "không"
