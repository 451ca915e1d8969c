#!/usr/bin/env bash
# Rebuilds recipes/hello/bin/hello from hello.S with GNU as and ld (binutils). The
# binary is committed, so building the example needs neither; run this only after
# changing hello.S, and commit both.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
as -o "$tmp/hello.o" "$here/hello.S"
ld -static -s -n --build-id=none -o "$tmp/hello" "$tmp/hello.o"
install -m 0755 "$tmp/hello" "$here/../bin/hello"
