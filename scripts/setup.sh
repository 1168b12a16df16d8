#!/usr/bin/env bash
# Installs what the build needs beyond a Rust toolchain and gcc: libclang, used by the RocksDB
# bindings' build script. Debian/Ubuntu via apt-get; elsewhere it says what to install.
set -euo pipefail

have_libclang() {
    [ -n "${LIBCLANG_PATH:-}" ] && return 0
    # libclang itself (libclang.so or libclang-<version>.so), not libclang-cpp.
    ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so' && return 0
    compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null && return 0
    return 1
}

if have_libclang; then
    exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "setup: installing libclang-dev (needed to build RocksDB's bindings)" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libclang-dev >/dev/null
else
    echo "setup: libclang not found; install clang/libclang (or set LIBCLANG_PATH) and retry" >&2
    exit 1
fi
