#!/usr/bin/env bash
# bench/zstd-budget.sh — the CPU floor of a zstd OCI layer of the benchmark corpus.
# See docs/benchmarks.md ("The zstd target and the CPU it needs").
#
# Usage: bash bench/zstd-budget.sh [--scale S] [--work DIR]
#
# Every zstd layer of the corpus, by any tool, costs at least: compressing the tar at
# format 2's level (zstd level 1, two workers), hashing the tar (its diff_id) and the
# compressed bytes (its digest), and reading the bytes once. This prints each as CPU
# seconds (user + sys, the minimum of 3 runs, so that other load on the machine
# inflates it least), their sum, and the baseline compressor's (`zstd -3 -T0`) for
# comparison. openssl's sha256 stands for any sha256 using the CPU's SHA
# instructions. Needs python3, tar, zstd, openssl and GNU time.
set -euo pipefail

SCALE=1.0
WORK=""
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) SCALE=$2; shift 2 ;;
        --work) WORK=$2; shift 2 ;;
        *) echo "bench/zstd-budget.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
here=$(cd "$(dirname "$0")" && pwd)
make_corpus=${IMGBUILD_MAKE_CORPUS:-$here/../../shared/bench/make-corpus.py}
for tool in python3 tar zstd openssl /usr/bin/time; do
    command -v "$tool" > /dev/null || { echo "bench/zstd-budget.sh: needs $tool" >&2; exit 1; }
done
if [ -z "$WORK" ]; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
fi
cd "$WORK"
[ -d corpus ] || python3 "$make_corpus" corpus --scale "$SCALE" > /dev/null
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C corpus -cf corpus.tar .
zstd -q -1 -T2 -f corpus.tar -o layer.tar.zst

cpu() { # the minimum over 3 runs of user + sys seconds of "$@"
    local best="" s
    for _ in 1 2 3; do
        s=$({ /usr/bin/time -f "%U %S" "$@" > /dev/null; } 2>&1 | tail -1 | awk '{printf "%.2f", $1 + $2}')
        best=$(python3 -c "print(min([$s${best:+, $best}]))")
    done
    echo "$best"
}
compress=$(cpu zstd -q -1 -T2 -c corpus.tar)
diff_id=$(cpu openssl dgst -sha256 corpus.tar)
digest=$(cpu openssl dgst -sha256 layer.tar.zst)
read_once=$(cpu cat corpus.tar)
baseline=$(cpu zstd -q -3 -T0 -c corpus.tar)
sum=$(python3 -c "print(round($compress + $diff_id + $digest + $read_once, 2))")
echo "| work | CPU (s) |"
echo "| --- | ---: |"
echo "| compress the tar, zstd level 1, 2 workers | $compress |"
echo "| sha256 of the tar (diff_id) | $diff_id |"
echo "| sha256 of the compressed layer (digest) | $digest |"
echo "| read the bytes once | $read_once |"
echo "| **floor for any zstd OCI layer** | **$sum** |"
echo "| for comparison: \`zstd -3 -T0\` alone (the baseline's compressor) | $baseline |"
echo
echo "tar: $(stat -c %s corpus.tar) bytes; nproc: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
