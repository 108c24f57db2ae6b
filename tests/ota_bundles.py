"""Firmware bundles for the update tests, and a small HTTP server that serves them.

``make_bundle(root, version, patch)`` lays out a bundle as ``loaxa device bundle`` does
(tools/device_bundle.py: ``manifest.json`` with path, size and SHA-256 per file, ``files/lib/...``)
but of the source files, not .mpy: the simulator's receivers run it under CPython as well as the
ESP32-model MicroPython, and an x86 host cannot load the bundle's Xtensa native code. ``patch``
maps a source path (``firmware/shell.py``) to a function of its text: how a test makes a bundle
that crashes at boot or cannot reach the broker. ``FIRMWARE_VERSION`` is set to the version.

``BundleServer`` (tests/local_server.py) serves ``root`` under ``/fw/``, with Range requests;
``cut_after`` ends the body of a path after that many bytes once (a link lost mid-file),
``hold`` (an asyncio.Event) stops every file's body half way until it is set, and
``requests`` keeps what was asked (path, first byte).

Imported as a top-level module, like ``local_server`` (``tests/`` is on ``sys.path``).
"""

import asyncio
import hashlib
import json
import os
from pathlib import Path

from local_server import LocalServer

from tools.device_bundle import FORMAT, device_sources, manifest_hash
from tools.mpbuild import REPO


def make_bundle(root, version, patch=None):
    """Write ``root/<version>/`` and return the ``update`` command's arguments but ``url``."""
    patch = dict(patch or {})
    patch.setdefault("firmware/__init__.py", lambda text: text.replace(
        'FIRMWARE_VERSION = "', 'FIRMWARE_VERSION = "%s"  # was "' % version, 1))
    bundle = Path(root) / version
    entries = []
    for rel in device_sources(REPO):
        if rel.startswith("firmware/board/"):
            continue
        data = (Path(REPO) / rel).read_bytes()
        if rel in patch:
            data = patch[rel](data.decode()).encode()
        target = bundle / "files" / "lib" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        entries.append({"path": "/lib/" + rel, "source": rel, "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    manifest = {"format": FORMAT, "name": "loaxa-firmware", "version": version,
                "files": sorted(entries, key=lambda e: e["path"])}
    manifest["manifest_sha256"] = manifest_hash(manifest)
    blob = json.dumps(manifest, sort_keys=True, indent=1).encode() + b"\n"
    (bundle / "manifest.json").write_bytes(blob)
    return {"ver": version, "man": hashlib.sha256(blob).hexdigest(), "msize": len(blob),
            "total": sum(e["size"] for e in entries)}


def tamper(root, version, path):
    """Change one byte of a bundle file after its manifest was made (same size)."""
    target = Path(root) / version / "files" / path.lstrip("/")
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x20
    target.write_bytes(bytes(data))


class BundleServer(LocalServer):
    def __init__(self, root):
        self.root = Path(root)
        self.requests = []
        self.cut_after = {}   # path -> bytes after which the body stops, once
        self.hold = None      # an asyncio.Event: file bodies stop half way until it is set

    def url(self, version):
        return "http://127.0.0.1:%d/fw/%s" % (self.port, version)

    async def _handle(self, reader, writer):
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
        except Exception:
            writer.close()
            return
        path = head.split(" ")[1]
        start = 0
        for line in head.split("\r\n"):
            if line.lower().startswith("range: bytes="):
                start = int(line.split("=")[1].split("-")[0])
        self.requests.append((path, start))
        local = self.root / path[len("/fw/"):] if path.startswith("/fw/") else None
        try:
            if local is None or ".." in path or not local.is_file():
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            else:
                data = local.read_bytes()
                rest = data[start:]
                status = b"206 Partial Content" if start else b"200 OK"
                writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n"
                             % (status, len(rest)))
                cut = self.cut_after.pop(path, None)
                if self.hold is not None and "/files/" in path:
                    # Half the file now, the rest when the hold is released (a slow link).
                    cut = len(rest) // 2
                    writer.write(rest[:cut])
                    await writer.drain()
                    await self.hold.wait()
                    writer.write(rest[cut:])
                else:
                    writer.write(rest if cut is None else rest[:cut])
            await writer.drain()
        except (Exception, asyncio.CancelledError):
            pass  # the receiver went away (a power cut), or the test is over
        writer.close()


def staged(storage):
    """The files under ``storage/fw`` (for asserts), relative paths."""
    out = []
    for base, _dirs, names in os.walk(os.path.join(storage, "fw")):
        for name in names:
            out.append(os.path.relpath(os.path.join(base, name), storage))
    return sorted(out)


def bundle_tar(root, version):
    """The bundle ``make_bundle`` wrote, as the tar ``loaxa device bundle`` writes beside it
    (tools/device_bundle.py's own tar writer)."""
    from tools.device_bundle import _tar_bytes

    bundle = Path(root) / version
    raw = (bundle / "manifest.json").read_bytes()
    contents = {e["path"]: (bundle / "files" / e["path"].lstrip("/")).read_bytes()
                for e in json.loads(raw)["files"]}
    return _tar_bytes(contents, raw)
