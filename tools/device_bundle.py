"""The firmware bundle: protocol/ and firmware/ compiled for the ESP32, as the board holds them.

A bundle is a directory ``loaxa-firmware-<version>/`` holding ``manifest.json`` and ``files/``
(laid out as the board's file system: ``files/lib/protocol/*.mpy``, ``files/lib/firmware/*.mpy``,
``files/boot.py``, ``files/main.py``), and the same as one archive ``loaxa-firmware-<version>.tar``
beside it. The same source gives the same bytes: mpy-cross is given the repository-relative path
(no checkout path inside the .mpy), the manifest is canonical JSON with no timestamps, and the
tar's entries are sorted with mtime 0 and owner 0.

The manifest lists every file with its path on the board, size and SHA-256, the firmware
version, the .mpy ABI (read from the files' own headers) and the oldest MicroPython that loads
it, the source commit when git knows it, and ``manifest_sha256``: the SHA-256 of the manifest's
canonical form without that field (what an update command can carry to name a bundle).
"""

import hashlib
import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

from tools.mpbuild import DEVICE_PACKAGES, REPO, mpy_cross

MANIFEST = "manifest.json"
FILES = "files"
FORMAT = 1
# The board runs these two by name, parsed as source: MicroPython's startup calls
# pyexec_file_if_exists("boot.py") then ("main.py") (shared/runtime/pyexec.c), which compiles
# the file's text; a boot.mpy or main.mpy would never run. They are small and only import the
# compiled firmware. Everything else of firmware/board/ would be dead weight in /lib.
BOARD_DIR = "firmware/board"
SOURCE_ON_BOARD = {
    "boot.py": "run by name as source at every boot (pyexec_file_if_exists(\"boot.py\")): "
               "MicroPython never runs a boot.mpy",
    "main.py": "run by name as source after boot.py (pyexec_file_if_exists(\"main.py\")): "
               "MicroPython never runs a main.mpy; it only imports the compiled firmware",
}
MARCH = "xtensawin"
# .mpy header (py/persistentcode.h): b"M", MPY_VERSION, then a byte holding the native
# architecture (bits 2-7) and the native sub-version (bits 0-1). Bytecode-only files carry
# architecture 0 and load on any MicroPython of the same MPY_VERSION; a file with native code
# (viper) needs the same sub-version and architecture.
MPY_ARCHS = {0: None, 1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em",
             7: "armv7emsp", 8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc",
             12: "rv64imc"}
# The first MicroPython release that loads each .mpy ABI (MicroPython's docs, "MicroPython .mpy
# files": v1.19 writes 6, v1.20-1.21 6.1, v1.22 6.2, v1.23 and later 6.3).
FIRST_RELEASE = {(6, 0): "1.19", (6, 1): "1.20", (6, 2): "1.22", (6, 3): "1.23"}


class BundleError(Exception):
    pass


def firmware_version(source_root=REPO):
    """FIRMWARE_VERSION from firmware/__init__.py, read as text (no import of the tree)."""
    text = (Path(source_root) / "firmware" / "__init__.py").read_text()
    found = re.search(r"^FIRMWARE_VERSION\s*=\s*[\"']([^\"']+)[\"']", text, re.M)
    if not found:
        raise BundleError("firmware/__init__.py has no FIRMWARE_VERSION = \"...\"")
    return found.group(1)


def mpy_header(data):
    """(mpy version, native sub-version, native arch or None) from a .mpy file's first bytes."""
    if len(data) < 4 or data[0:1] != b"M":
        raise BundleError("not a .mpy file (no 'M' header)")
    arch = MPY_ARCHS.get(data[2] >> 2, "unknown-%d" % (data[2] >> 2))
    return data[1], (data[2] & 3) if arch else 0, arch


def micropython_minimum(headers):
    """The ABI the files need and the oldest MicroPython release that loads them all."""
    versions = {h[0] for h in headers}
    if len(versions) != 1:
        raise BundleError("mixed .mpy versions %s: one mpy-cross must compile all" % versions)
    version = versions.pop()
    native = sorted({(h[1], h[2]) for h in headers if h[2]})
    if len(native) > 1:
        raise BundleError("native code for several ABIs %s" % native)
    sub_version, arch = native[0] if native else (0, None)
    release = FIRST_RELEASE.get((version, sub_version))
    if release is None:
        raise BundleError("mpy %d.%d is newer than this tool knows: add it to FIRST_RELEASE"
                          % (version, sub_version))
    return {"version": version, "sub_version": sub_version, "native_arch": arch}, release


def source_commit(source_root):
    """(commit, dirty) of the device sources, or (None, None) outside a git checkout."""
    def git(*args):
        return subprocess.run(["git", "-C", str(source_root), *args], capture_output=True,
                              text=True, timeout=30)
    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None, None
        status = git("status", "--porcelain", "--", *DEVICE_PACKAGES)
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


def board_path(rel):
    """Where a source file (``firmware/core.py``) lives on the board (``/lib/firmware/core.mpy``)."""
    if rel.startswith(BOARD_DIR + "/"):
        name = rel[len(BOARD_DIR) + 1:]
        return "/" + name if name in SOURCE_ON_BOARD else None
    return "/lib/" + rel[:-3] + ".mpy"


def device_sources(source_root):
    root = Path(source_root)
    return sorted(p.relative_to(root).as_posix() for pkg in DEVICE_PACKAGES
                  for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts)


def compile_source(cross, source_root, rel):
    """The .mpy bytes of one source, compiled as the board runs it (-O2: asserts out)."""
    result = subprocess.run([cross, "-march=" + MARCH, "-O2", "-s", rel, "-o", "-", rel],
                            cwd=source_root, capture_output=True, timeout=120)
    if result.returncode != 0 or not result.stdout:
        raise BundleError("mpy-cross refused %s: %s"
                          % (rel, result.stderr.decode(errors="replace").strip()))
    return result.stdout


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_hash(manifest):
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(canonical(body)).hexdigest()


def build_contents(source_root=REPO, version=None, progress=print):
    """Compile the tree: ({board path: bytes}, manifest)."""
    source_root = Path(source_root)
    cross = mpy_cross()
    sources = device_sources(source_root)
    if not sources:
        raise BundleError("no .py files under %s/{%s}" % (source_root, ",".join(DEVICE_PACKAGES)))
    contents, entries, headers = {}, [], []
    for rel in sources:
        compiled = compile_source(cross, source_root, rel)  # also the syntax check of board/
        target = board_path(rel)
        if target is None:
            continue
        if target.endswith(".mpy"):
            data = compiled
            headers.append(mpy_header(data))
        else:
            data = (source_root / rel).read_bytes()
        contents[target] = data
        entry = {"path": target, "source": rel, "size": len(data),
                 "sha256": hashlib.sha256(data).hexdigest()}
        if not target.endswith(".mpy"):
            entry["kept_as_source"] = SOURCE_ON_BOARD[target[1:]]
        entries.append(entry)
    abi, release = micropython_minimum(headers)
    commit, dirty = source_commit(source_root)
    manifest = {"format": FORMAT, "name": "loaxa-firmware",
                "version": version or firmware_version(source_root),
                "march": MARCH, "mpy": abi, "micropython_min": release,
                "source_commit": commit, "source_dirty": dirty,
                "files": sorted(entries, key=lambda e: e["path"])}
    manifest["manifest_sha256"] = manifest_hash(manifest)
    progress("compiled %d modules for the ESP32 (%s, mpy %d.%d, MicroPython >= %s)"
             % (len(headers), MARCH, abi["version"], abi["sub_version"], release))
    return contents, manifest


def _tar_bytes(contents, manifest_bytes):
    """One tar, byte for byte the same for the same contents: sorted, mtime 0, owner 0."""
    out = io.BytesIO()
    members = [(MANIFEST, manifest_bytes)] + [(FILES + path, contents[path])
                                              for path in sorted(contents)]
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        dirs = sorted({str(parent) for name, _ in members for parent in Path(name).parents}
                      - {"."})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def write_bundle(out_dir, source_root=REPO, version=None, progress=print):
    """Build and write DIR/loaxa-firmware-V/ and DIR/loaxa-firmware-V.tar; return the dir."""
    contents, manifest = build_contents(source_root, version, progress)
    name = "loaxa-firmware-%s" % manifest["version"]
    if not re.fullmatch(r"[0-9A-Za-z._+-]+", manifest["version"]):
        raise BundleError("version %r: use letters, digits and . _ + -" % manifest["version"])
    out_dir = Path(out_dir)
    bundle = out_dir / name
    if bundle.exists():  # a fresh tree: no file of an older build may linger in it
        for old in sorted(bundle.rglob("*"), reverse=True):
            old.rmdir() if old.is_dir() else old.unlink()
    manifest_bytes = json.dumps(manifest, sort_keys=True, indent=1,
                                ensure_ascii=False).encode() + b"\n"
    for path, data in contents.items():
        target = bundle / FILES / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (bundle / MANIFEST).write_bytes(manifest_bytes)
    (out_dir / (name + ".tar")).write_bytes(_tar_bytes(contents, manifest_bytes))
    progress("bundle %s (%d files, manifest %s) and %s.tar"
             % (bundle, len(contents), manifest["manifest_sha256"][:16], name))
    return bundle


def read_bundle(bundle):
    """The manifest of a bundle directory, after checking every file against it."""
    bundle = Path(bundle)
    try:
        manifest = json.loads((bundle / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError("%s is not a bundle (%s): make one with `loaxa device bundle`"
                          % (bundle, exc)) from None
    if manifest.get("format") != FORMAT or manifest_hash(manifest) != manifest.get(
            "manifest_sha256"):
        raise BundleError("%s/%s is damaged or of another format" % (bundle, MANIFEST))
    for entry in manifest["files"]:
        local = bundle / FILES / entry["path"].lstrip("/")
        try:
            data = local.read_bytes()
        except OSError:
            raise BundleError("bundle file %s is missing" % local) from None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BundleError("bundle file %s does not match its manifest hash" % local)
    return manifest
