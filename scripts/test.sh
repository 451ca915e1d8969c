#!/usr/bin/env bash
# The whole test suite, on a fresh machine that has only the Rust toolchain.
# Installs the independent tools the tests cross-check against (Debian packages),
# then runs formatting and lint checks and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package that provides it
declare -A tools=(
  [skopeo]=skopeo
  [umoci]=umoci
  [oci-image-tool]=oci-image-tool
  [busybox]=busybox-static
  [python3]=python3
  [git]=git
  [mkfifo]=coreutils
  [chroot]=coreutils
  [docker-registry]=docker-registry
  [openssl]=openssl
  [htpasswd]=apache2-utils
  [gzip]=gzip
  [go]=golang-go
  [qemu-x86_64]=qemu-user
  [script]=bsdutils
  [dpkg-deb]=dpkg
  [apt-ftparchive]=apt-utils
  [gpg]=gpg
  [gpg-agent]=gpg-agent
  [gpgconf]=gpgconf
  [xz]=xz-utils
  [md5sum]=coreutils
)
missing=()
for t in "${!tools[@]}"; do
  command -v "$t" >/dev/null 2>&1 || missing+=("${tools[$t]}")
done
# The busybox test needs the static build, whatever busybox is on PATH.
if ! { [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; }; then
  dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing test tools: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
    exit 1
  fi
  echo "installing test tools: ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" file >/dev/null
fi

# Real Debian packages for tests/apt.rs: ca-certificates, tzdata, libc6 and coreutils with
# everything they depend on, as this machine's apt sources have them, fetched once
# with apt-get download (the tests themselves serve them from a loopback repository
# and reach nothing else). Where they cannot be fetched, that test says it skipped.
debs="${CARGO_TARGET_DIR:-target}/debian-debs"
if [ ! -e "$debs/complete" ] && command -v apt-get >/dev/null 2>&1 \
  && [ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ]; then
  closure() {
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances ca-certificates tzdata libc6 coreutils 2>/dev/null \
      | grep '^[a-z0-9]' | sort -u
  }
  names=$(closure)
  if [ -z "$names" ] && [ "$(id -u)" = 0 ]; then
    apt-get update -qq || true
    names=$(closure)
  fi
  rm -rf "$debs" && mkdir -p "$debs"
  # shellcheck disable=SC2086 # one word per package name
  if [ -n "$names" ] && (cd "$debs" && apt-get download -qq $names >/dev/null 2>&1); then
    touch "$debs/complete"
  else
    echo "note: could not fetch Debian's ca-certificates, tzdata, libc6 and coreutils with apt-get download;" \
      "the test that builds them will say it skipped" >&2
    rm -rf "$debs"
  fi
fi
if [ -e "$debs/complete" ]; then
  export IMGBUILD_TEST_DEBIAN_DEBS
  IMGBUILD_TEST_DEBIAN_DEBS="$(cd "$debs" && pwd)"
fi

# The Python validators the SBOM and provenance tests check our documents with
# (tests/provenance.rs), and the independent ECDSA and NaCl implementations the
# signing tests check our signatures and cosign keys with (tests/signing.rs), from
# PyPI into a venv of their own, pinned.
venv="${CARGO_TARGET_DIR:-target}/test-venv"
if ! "$venv/bin/python" -c 'import spdx_tools, in_toto_attestation, cryptography, nacl' 2>/dev/null; then
  mkdir -p "$(dirname "$venv")"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "python3 cannot make a venv; install python3-venv (apt-get install python3-venv python3-pip) or run as root" >&2
      exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    'spdx-tools==0.8.5' 'in-toto-attestation==0.9.3' 'cryptography==44.0.2' 'PyNaCl==1.5.0'
fi
export IMGBUILD_TEST_PYTHON
IMGBUILD_TEST_PYTHON="$(cd "$(dirname "$venv")" && pwd)/$(basename "$venv")/bin/python"

export IMGBUILD_SKIPPED_LOG
IMGBUILD_SKIPPED_LOG=$(mktemp)
trap 'rm -f "$IMGBUILD_SKIPPED_LOG"' EXIT

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked

if [ -s "$IMGBUILD_SKIPPED_LOG" ]; then
  echo
  echo "Tests that were skipped on this machine:"
  sed 's/^/  /' "$IMGBUILD_SKIPPED_LOG"
fi
