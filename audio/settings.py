"""One settings object for the audio pipeline, with defaults chosen for speech on a paid 4G link.

Why these defaults:
- Loudness target -16 LUFS integrated, true peak -1.5 dBTP. Broadcast's -23 LUFS (EBU R128)
  assumes a quiet living room and a listener with a volume knob; a horn on a pole competes with
  traffic, and its amplifier gain is set once by a technician. -16 LUFS is the level used for
  speech heard in noise (AES TD1004 for mobile/podcast speech), so every bulletin comes out at
  one high, consistent level. The -1.5 dBTP ceiling leaves room for the MP3 encoder's overshoot
  so the receiver's DAC does not clip.
- Speech profile: 150-7000 Hz band-pass (a horn speaker reproduces nothing useful below
  ~150 Hz and low rumble only eats amplifier power; 7 kHz keeps the consonants that carry
  intelligibility) and a compressor (4:1 above the target level), because raw speech peaks 18-20 dB above its
  loudness and a -16 LUFS / -1.5 dBTP item allows only 14.5 dB: without it a limiter would
  squash the peaks hard or the target would be missed.
- Both renditions at 16 kHz: wideband speech reaches 7-8 kHz, and one rate means one
  resampling for both renditions.
  - MP3: mono, MPEG-2 Layer III, 32 kbit/s CBR = 240 kB per minute (a 30-minute bulletin is
    7.2 MB per receiver). At 24 kbit/s (180 kB/min) LAME cuts everything above ~5 kHz, and
    with it the 5-7 kHz consonant band the speech profile keeps; at 32 kbit/s it keeps ~6.5
    kHz. No bit reservoir, so every MPEG frame (144 bytes, 36 ms) decodes alone and a file
    rendition can be cut into live frames as it is.
  - IMA-ADPCM: 16 kHz, 256-byte blocks (505 samples, 31.6 ms) = 8,127 B/s = 488 kB per
    minute, twice the MP3; it is for I2S receivers that cannot decode MP3, which should sit on
    Wi-Fi/Ethernet or a generous data plan. 11025 Hz would cut that to 336 kB/min at the cost
    of everything above 5 kHz.
- Limits: 200 MB and 4 hours per upload.
"""

import hashlib
import json
from dataclasses import asdict, dataclass

from protocol.media import adpcm_samples_per_block

MB = 1024 * 1024


@dataclass(frozen=True)
class AudioSettings:
    # Loudness (EBU R128 / ITU-R BS.1770)
    target_lufs: float = -16.0
    true_peak_db: float = -1.5
    # Speech profile for horn speakers: band-pass + gentle compression before normalising.
    speech_profile: bool = True
    highpass_hz: int = 150
    lowpass_hz: int = 7000
    # Gain is capped so the noise floor of a near-silent source is not raised without bound.
    max_gain_db: float = 30.0
    near_silent_lufs: float = -45.0
    # Share of samples stuck at full scale above which a source is "heavily clipped".
    clipped_fraction: float = 0.001
    # Renditions
    mp3_rate: int = 16000
    mp3_bitrate_kbps: int = 32
    adpcm_rate: int = 16000
    adpcm_block_bytes: int = 256
    # Ingest limits (refused before any conversion)
    max_upload_bytes: int = 200 * MB
    max_duration_s: float = 4 * 3600.0

    def fingerprint(self):
        """A short hash of everything that changes the renditions (limits do not)."""
        fields = asdict(self)
        for name in ("max_upload_bytes", "max_duration_s"):
            fields.pop(name)
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def work_rate(self, codecs):
        """The rate audio is processed at: the highest rate any requested rendition needs."""
        rates = [self.rate_for(codec) for codec in codecs]
        return max(rates) if rates else self.adpcm_rate

    def rate_for(self, codec):
        if codec == "mp3":
            return self.mp3_rate
        if codec == "adpcm":
            return self.adpcm_rate
        raise ValueError("unknown codec %r (expected mp3 or adpcm)" % codec)


DEFAULT_SETTINGS = AudioSettings()


def bytes_per_minute(settings, codec):
    """Size of one minute of a rendition, for the link budget shown to operators."""
    if codec == "mp3":
        return settings.mp3_bitrate_kbps * 1000 // 8 * 60
    block = settings.adpcm_block_bytes
    return settings.adpcm_rate * 60 * block // adpcm_samples_per_block(block)
