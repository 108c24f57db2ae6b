"""The heap check at boot (firmware/heap.py): a board without PSRAM is refused, clearly."""

from firmware.heap import MIN_HEAP_BYTES, heap_refusal


def test_a_board_without_psram_is_refused_with_the_reason():
    # An ESP32-WROOM: about 110 KB of heap once Wi-Fi is up.
    message = heap_refusal(90 * 1024, 20 * 1024)
    assert message is not None
    assert "110 KB" in message and "PSRAM" in message


def test_a_wrover_heap_is_enough():
    assert heap_refusal(2000000, 100000) is None
    assert heap_refusal(MIN_HEAP_BYTES, 0) is None
