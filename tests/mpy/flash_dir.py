"""A helper of tests/mpy: remove a directory tree with what MicroPython's ``os`` has."""

import os


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
