"""Native (viper) IMA-ADPCM block decoder for the ESP32; see ``firmware.adpcm``.

Imported only through ``firmware.adpcm``, inside try/except: under CPython ``import micropython``
fails, and on a port without a native emitter (the wasm build) compiling the decorator fails;
either way the plain-Python decoder is used. Same algorithm, line for line.
"""

# ruff: noqa: F821  (ptr8 and ptr16 are built-ins inside a viper function)
import micropython

# The IMA step table as little-endian u16 bytes: set by firmware.adpcm when it imports this
# module (a viper function takes at most 4 arguments on older ports, so it is not one of them).
STEPS_LE16 = b""


@micropython.viper
def decode_viper(block, start: int, end: int, out) -> int:
    src = ptr8(block)
    dst = ptr16(out)
    tab = ptr16(STEPS_LE16)
    pred = src[start] | (src[start + 1] << 8)
    if pred & 0x8000:
        pred -= 0x10000
    idx = int(src[start + 2])
    if idx > 88:
        idx = 88
    dst[0] = pred & 0xFFFF
    k = 1
    i = start + 4
    while i < end:
        byte = int(src[i])
        half = 0
        while half < 2:
            code = byte & 15 if half == 0 else byte >> 4
            diff = ((((code & 7) << 1) + 1) * int(tab[idx])) >> 3
            if code & 8:
                pred -= diff
                if pred < -32768:
                    pred = -32768
            else:
                pred += diff
                if pred > 32767:
                    pred = 32767
            if (code & 7) < 4:
                if idx > 0:
                    idx -= 1
            else:
                idx += ((code & 7) - 3) * 2
                if idx > 88:
                    idx = 88
            dst[k] = pred & 0xFFFF
            k += 1
            half += 1
        i += 1
    return k
