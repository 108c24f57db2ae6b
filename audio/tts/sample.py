"""A typical commune bulletin of about 500 characters, with the dates, times, numbers, units,
abbreviations and phone number that normalisation must read out. Used by the TTS tests, the
TTS benchmark and as demo content."""

SAMPLE_BULLETIN = (
    "Thông báo của UBND xã Hòa Bình v/v phòng chống bão số 13. Hồi 17h30 ngày 15/11/2026, "
    "vị trí tâm bão cách đất liền khoảng 120km, sức gió mạnh nhất cấp 12, giật cấp 14 "
    "(118-133 km/h). Từ đêm nay đến ngày 17/11 có mưa to, lượng mưa phổ biến 150-250mm. "
    "BCH PCTT&TKCN xã đề nghị bà con thu hoạch sớm 35ha lúa đã chín, chằng chống nhà cửa, "
    "không ra khơi. 1.250 hộ ven sông chuẩn bị sơ tán trước 8h sáng mai. "
    "Nhiệt độ thấp nhất 18-20°C. Loa phát lại bản tin này lúc 5h30 và 17h00. "
    "Mọi thông tin xin liên hệ SĐT 0912 345 678."
)
