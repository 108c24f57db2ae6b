"""Helpers of tests/mpy: a fresh flash directory, and a directory tree removed with what
MicroPython's ``os`` has."""

import os
import time

try:
    _ticks = time.ticks_ms
except AttributeError:  # CPython
    def _ticks():
        return int(time.monotonic() * 1000)


def remove_tree(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        full = path + "/" + name
        try:
            os.remove(full)
        except OSError:
            remove_tree(full)
    os.rmdir(path)


def fresh_dir(name):
    """An empty directory under /tmp for one test (made again if a run left it)."""
    from firmware.store import makedirs

    path = "/tmp/loaxa-mpy-%s-%d" % (name, _ticks() % 1000000)
    remove_tree(path)
    makedirs(path)
    return path
