"""Does this board have the heap the receiver needs? Checked first thing at boot (board/main.py).

Measured with the real firmware under MicroPython computing like an ESP32, one receiver per
process with its heap capped (bench/bench_micropython.py, docs/benchmarks.md): at 100 KB, an
ESP32 without PSRAM, importing the firmware alone runs out of memory; at 150-200 KB it boots and
plays cached files but cannot open a live stream (the jitter buffer is 64 KB); from 300 KB
everything runs. TLS takes another ~40 KB on the board. So a board needs PSRAM (ESP32-WROVER,
ESP32-S3 with PSRAM): with less heap than ``MIN_HEAP_BYTES`` the receiver refuses to start with
a message that says so, rather than crash somewhere in the middle of a broadcast.
"""

MIN_HEAP_BYTES = 400 * 1024


def heap_refusal(mem_free, mem_alloc):
    """A message saying why this heap is too small, or None when it is enough."""
    total = mem_free + mem_alloc
    if total >= MIN_HEAP_BYTES:
        return None
    return ("this board has %d KB of heap; a Loaxa receiver needs %d KB: use an ESP32 with "
            "PSRAM (ESP32-WROVER, or ESP32-S3 with PSRAM) and MicroPython's SPIRAM build"
            % (total // 1024, MIN_HEAP_BYTES // 1024))
