"""MicroPython-compatible tests, also run under a real MicroPython by `make test-micropython`.

A package so its test files may share basenames with tests elsewhere (tests/test_protocol.py).
"""
