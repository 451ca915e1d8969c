#!/usr/bin/env bash
# bench/run.sh — time imgbuild against the tar | pigz, tar | zstd, umoci and buildah
# baselines on the shared benchmark corpus. See docs/benchmarks.md.
#
# Usage: bash bench/run.sh [--scale S] [--runs N] [--work DIR] [--keep] [--write-doc]
#                          [--no-build] [--imgbuild PATH] [--no-push]
#
#   --scale S     corpus scale for ../shared/bench/make-corpus.py (default 1.0)
#   --runs N      rounds; every round runs every contender once, in the same order (the
#                 rounds are interleaved), and the median wall time is reported (default 5)
#   --work DIR    scratch directory (default: a fresh mktemp -d under /tmp, removed at exit)
#   --keep        keep the scratch directory (and reuse a corpus of the same scale there)
#   --write-doc   rewrite the results section of docs/benchmarks.md
#   --no-build    use the existing target/release/imgbuild instead of `cargo build --release`
#   --imgbuild P  time the imgbuild binary at P (implies --no-build)
#   --no-push     leave out the push contenders (imgbuild push vs skopeo copy to a
#                 docker-registry on 127.0.0.1)
#
# Prints a Markdown table on stdout; progress goes to stderr.
set -euo pipefail

ORIG_ARGS=("$@")
SCALE=1.0
RUNS=5
IMGBUILD=""
WORK=""
KEEP=0
WRITE_DOC=0
BUILD=1
PUSH=1

die() { echo "bench/run.sh: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --scale) [ $# -ge 2 ] || die "--scale needs a value"; SCALE=$2; shift 2 ;;
        --scale=*) SCALE=${1#*=}; shift ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --work) [ $# -ge 2 ] || die "--work needs a value"; WORK=$2; shift 2 ;;
        --work=*) WORK=${1#*=}; shift ;;
        --keep) KEEP=1; shift ;;
        --write-doc) WRITE_DOC=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --no-push) PUSH=0; shift ;;
        --imgbuild) [ $# -ge 2 ] || die "--imgbuild needs a path"; IMGBUILD=$2; BUILD=0; shift 2 ;;
        --imgbuild=*) IMGBUILD=${1#*=}; BUILD=0; shift ;;
        -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, not '$RUNS'"
[[ "$SCALE" =~ ^[0-9]*\.?[0-9]+$ ]] || die "--scale must be a positive number, not '$SCALE'"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The shared corpus generator; IMGBUILD_MAKE_CORPUS overrides where it is (a worktree
# elsewhere than beside ../shared).
MAKE_CORPUS=${IMGBUILD_MAKE_CORPUS:-$REPO/../shared/bench/make-corpus.py}
[ -f "$MAKE_CORPUS" ] || die "corpus generator not found at $MAKE_CORPUS"

# --- tools ---------------------------------------------------------------------------
# command -> Debian package
declare -A PKG=([pigz]=pigz [zstd]=zstd [umoci]=umoci [/usr/bin/time]=time
               [skopeo]=skopeo [docker-registry]=docker-registry [curl]=curl)
missing=()
for tool in pigz zstd umoci /usr/bin/time skopeo docker-registry curl; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("${PKG[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing ${missing[*]}"
        apt-get install -y "${missing[@]}" >&2 \
            || { apt-get update >&2 && apt-get install -y "${missing[@]}" >&2; } \
            || die "could not install ${missing[*]}"
    else
        die "missing tools: ${missing[*]} (install them: apt-get install -y ${missing[*]})"
    fi
fi
# buildah is optional: timed when installed or installable (Debian package buildah).
BUILDAH=0
if command -v buildah >/dev/null 2>&1; then
    BUILDAH=1
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1 \
        && apt-get install -y buildah >&2; then
    BUILDAH=1
else
    log "buildah is not installable here: leaving it out"
fi
for tool in tar python3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done

# The load average before this script does anything: the sign of other work on the
# machine (later readings include this script's own build and corpus generation).
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "1/5/15-min load average at start: $LOAD_START"

# --- imgbuild --------------------------------------------------------------------------
[ -n "$IMGBUILD" ] || IMGBUILD=$REPO/target/release/imgbuild
if [ "$BUILD" -eq 1 ]; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet) >&2 || die "cargo build --release failed"
fi
[ -x "$IMGBUILD" ] || die "$IMGBUILD not found (drop --no-build)"
# Format versions: the gzip contenders are timed in format 2 and in format 1 when this
# imgbuild has --format-version; an older one builds its only format.
if "$IMGBUILD" build --help 2>/dev/null | grep -q -- '--format-version'; then
    FORMATS=1
    F2=(--format-version 2)
else
    FORMATS=0
    F2=()
    log "$IMGBUILD has no --format-version: timing its default format only"
fi

# --- scratch ---------------------------------------------------------------------------
if [ -z "$WORK" ]; then
    WORK=$(mktemp -d /tmp/imgbuild-bench.XXXXXX)
else
    mkdir -p "$WORK"
    WORK=$(cd "$WORK" && pwd)
fi
cleanup() {
    if [ "$KEEP" -eq 1 ]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap 'reg_stop 2>/dev/null || true; cleanup' EXIT

CORPUS=$WORK/corpus
if [ -f "$WORK/corpus.scale" ] && [ "$(cat "$WORK/corpus.scale")" = "$SCALE" ] && [ -d "$CORPUS" ]; then
    log "reusing corpus at $CORPUS (scale $SCALE)"
else
    rm -rf "$CORPUS" "$WORK/corpus.scale"
    log "generating corpus (scale $SCALE)"
    python3 "$MAKE_CORPUS" "$CORPUS" --scale "$SCALE"
    echo "$SCALE" > "$WORK/corpus.scale"
fi
CORPUS_BYTES=$(du -sb --apparent-size "$CORPUS" | cut -f1)
CORPUS_ENTRIES=$(find "$CORPUS" | wc -l)
log "corpus: $CORPUS_BYTES bytes, $CORPUS_ENTRIES entries"

# The recipes live beside the corpus, not in it (a recipe inside the context would be
# copied into the layer along with everything else).
for c in gzip zstd; do
    cat > "$WORK/recipe-$c.toml" <<EOF
[image]
source-date-epoch = 0
compression = "$c"

[[layer]]
name = "corpus"

  [[layer.copy]]
  src = "corpus/"
  dst = "/"
EOF
done

# --- timing helpers ------------------------------------------------------------------------
RES=$WORK/results.tsv       # contender  run  wall_s  rss_kib  output_bytes  digest
: > "$RES"
OUTS=$WORK/out
mkdir -p "$OUTS"
TAR_ARGS=(--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner
          "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime")

# The page cache is not dropped (that needs privileges a developer does not have); one
# untimed full read of the corpus warms it for every contender alike. GNU tar skips file
# contents when the archive is /dev/null, so the archive goes through a pipe.
log "warm-up read of the corpus"
tar -C "$CORPUS" -cf - . | cat > /dev/null

# Settle dirty pages of the previous contender before the next one starts, so that one's
# writeback is not billed to the next. Untimed.
settle() { sync; }

# time_cmd FILE CMD... : run CMD under GNU time, writing "wall_s max_rss_kib" to FILE.
time_cmd() { local f=$1; shift; /usr/bin/time -f '%e %M' -o "$f" "$@"; }

record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RES"; }

# imgbuild_run NAME RUN RECIPE OUTDIR [FLAG...] : one timed imgbuild build; records the
# layer size (manifests[0].layers[].size, summed) and the image digest.
imgbuild_run() {
    local name=$1 run=$2 recipe=$3 out=$4 t=$WORK/t.$1.$2; shift 4
    time_cmd "$t" "$IMGBUILD" build "$recipe" --out "$out" --json -q "$@" > "$t.json" \
        || die "imgbuild build failed ($name, run $run)"
    local size digest
    read -r size digest < <(python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))
print(sum(l["size"] for l in j["manifests"][0]["layers"]), j["digest"])' "$t.json")
    local wall rss; read -r wall rss < <(tail -n1 "$t")
    record "$name" "$run" "$wall" "$rss" "$size" "$digest"
}

# pipe_run NAME RUN OUTFILE COMPRESSOR... : tar | COMPRESSOR > OUTFILE. The wall time is
# the whole pipeline's; each side also runs under its own GNU time, and the peak RSS
# recorded is the larger of the two processes' (they run at the same time, so the
# pipeline's footprint is at most their sum; we report the max to compare like with like
# against imgbuild's single process).
pipe_run() {
    local name=$1 run=$2 outfile=$3; shift 3
    local t=$WORK/t.$name.$run
    time_cmd "$t" bash -c '
        set -o pipefail
        t=$1 corpus=$2 outfile=$3; shift 3
        n=$1; shift
        tarargs=("${@:1:$n}"); shift "$n"
        /usr/bin/time -f "%e %M" -o "$t.tar" tar "${tarargs[@]}" -C "$corpus" -cf - . \
          | /usr/bin/time -f "%e %M" -o "$t.z" "$@" > "$outfile"
    ' _ "$t" "$CORPUS" "$outfile" "${#TAR_ARGS[@]}" "${TAR_ARGS[@]}" "$@" \
        || die "pipeline failed ($name, run $run)"
    local wall rss_tar rss_z x
    read -r wall x < <(tail -n1 "$t")
    read -r x rss_tar < <(tail -n1 "$t.tar")
    read -r x rss_z < <(tail -n1 "$t.z")
    local rss=$(( rss_tar > rss_z ? rss_tar : rss_z ))
    record "$name" "$run" "$wall" "$rss" "$(stat -c %s "$outfile")" "-"
    echo "$rss_tar $rss_z" > "$t.rss"
}

UMOCI_FLAGS=()
[ "$(id -u)" -eq 0 ] || UMOCI_FLAGS+=(--rootless)

umoci_run() {
    local run=$1 layout=$2 t=$WORK/t.umoci.$1
    umoci init --layout "$layout" >&2
    umoci new --image "$layout:t" >&2
    settle
    time_cmd "$t" umoci insert "${UMOCI_FLAGS[@]}" --image "$layout:t" "$CORPUS" / >&2 \
        || die "umoci insert failed (run $run)"
    local size wall rss
    size=$(find "$layout/blobs" -type f -printf '%s\n' | sort -n | tail -n1)
    read -r wall rss < <(tail -n1 "$t")
    record "umoci-insert" "$run" "$wall" "$rss" "$size" "-"
}

# buildah_run RUN : `buildah build --timestamp 0` of a Containerfile that COPYs the corpus
# into an empty image, then `buildah push` of it to an OCI layout (buildah compresses the
# layer with gzip on push): the two commands a buildah user runs to get what imgbuild
# writes. Both timed together; the image is removed afterwards (untimed).
BUILDAH_CF=$WORK/Containerfile
printf 'FROM scratch\nCOPY . /\n' > "$BUILDAH_CF"
buildah_run() {
    local run=$1 layout=$2 t=$WORK/t.buildah.$1 img=localhost/imgbuild-bench:$1
    time_cmd "$t" bash -c '
        set -e
        buildah build -q --timestamp 0 --layers=false -f "$1" -t "$2" "$3" > /dev/null
        buildah push -q "$2" "oci:$4:t" > /dev/null
    ' _ "$BUILDAH_CF" "$img" "$CORPUS" "$layout" >&2 || die "buildah failed (run $run)"
    buildah rmi -f "$img" > /dev/null 2>&1 || true
    local size wall rss
    size=$(find "$layout/blobs" -type f -printf '%s\n' | sort -n | tail -n1)
    read -r wall rss < <(tail -n1 "$t")
    record "buildah" "$run" "$wall" "$rss" "$size" "-"
}

# --- push: a docker-registry on loopback, fresh storage for every contender ---------------
REG_PID=""
REG_PORT=""
REG_LOG=""
reg_start() {
    local dir=$1
    rm -rf "$dir"; mkdir -p "$dir/storage"
    REG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $dir/storage
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$REG_PORT
  secret: imgbuild-bench
EOF
    REG_LOG=$dir/registry.log
    docker-registry serve "$dir/config.yml" > "$REG_LOG" 2>&1 &
    REG_PID=$!
    local i
    for i in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$REG_PORT/v2/" > /dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "docker-registry did not answer on 127.0.0.1:$REG_PORT (log: $REG_LOG)"
}
reg_stop() {
    [ -n "$REG_PID" ] || return 0
    kill "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
    REG_PID=""
}
# Requests of one method the registry logged so far ("response completed" lines).
reg_count() { grep -c "response completed.*http.request.method=$1 " "$REG_LOG" || true; }

# push_run NAME RUN CMD... : one timed push; records the bytes of the layout's blobs and,
# in $WORK/requests.tsv, the requests by method that the registry logged meanwhile.
push_run() {
    local name=$1 run=$2 t=$WORK/t.$1.$2; shift 2
    local before=() m
    for m in HEAD GET POST PATCH PUT; do before+=("$(reg_count $m)"); done
    time_cmd "$t" "$@" > "$t.out" 2> "$t.err" || { cat "$t.err" >&2; die "$name failed (run $run)"; }
    # The registry logs a request after answering it: wait until its log stops growing.
    local n=-1
    while [ "$n" != "$(wc -l < "$REG_LOG")" ]; do n=$(wc -l < "$REG_LOG"); sleep 0.3; done
    local i=0 counts=""
    for m in HEAD GET POST PATCH PUT; do
        counts+="$m=$(( $(reg_count $m) - ${before[$i]} )) "; i=$((i + 1))
    done
    local wall rss; read -r wall rss < <(tail -n1 "$t")
    record "$name" "$run" "$wall" "$rss" "$PUSH_BYTES" "-"
    printf '%s\t%s\t%s\n' "$name" "$run" "${counts% }" >> "$WORK/requests.tsv"
}

# push_contenders RUN LAYOUT : imgbuild push, then the same push again (nothing new), to a
# fresh registry; then skopeo copy and its repeat to another fresh registry.
push_contenders() {
    local run=$1 layout=$2
    PUSH_BYTES=$(find "$layout/blobs" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
    # Blobs besides the one manifest (a single-platform image: config + layers).
    echo $(( $(find "$layout/blobs" -type f | wc -l) - 1 )) > "$WORK/push_blobs"
    reg_start "$WORK/registry"
    push_run imgbuild-push "$run" "$IMGBUILD" push -q "oci:$layout" "127.0.0.1:$REG_PORT/bench/imgbuild:t"
    push_run imgbuild-repush "$run" "$IMGBUILD" push -q "oci:$layout" "127.0.0.1:$REG_PORT/bench/imgbuild:t"
    reg_stop
    settle
    reg_start "$WORK/registry"
    push_run skopeo-copy "$run" skopeo copy --insecure-policy --dest-tls-verify=false \
        "oci:$layout" "docker://127.0.0.1:$REG_PORT/bench/skopeo:t"
    push_run skopeo-recopy "$run" skopeo copy --insecure-policy --dest-tls-verify=false \
        "oci:$layout" "docker://127.0.0.1:$REG_PORT/bench/skopeo:t"
    reg_stop
}

log "1/5/15-min load average before the timed runs (includes this script's own build and corpus generation): $(cut -d' ' -f1-3 /proc/loadavg)"

for run in $(seq 1 "$RUNS"); do
    log "run $run/$RUNS"
    d=$OUTS/$run
    rm -rf "$d"; mkdir -p "$d"

    settle
    imgbuild_run imgbuild-gzip "$run" "$WORK/recipe-gzip.toml" "$d/img-gzip" "${F2[@]}"
    settle
    # Rebuild with nothing changed: the same recipe into the same layout, right away.
    imgbuild_run imgbuild-gzip-rebuild "$run" "$WORK/recipe-gzip.toml" "$d/img-gzip" "${F2[@]}"
    if [ "$PUSH" -eq 1 ]; then
        settle
        push_contenders "$run" "$d/img-gzip"
    fi
    rm -rf "$d/img-gzip"

    settle
    pipe_run tar-pigz "$run" "$d/layer.tar.gz" pigz -n -6
    rm -f "$d/layer.tar.gz"

    if [ "$FORMATS" -eq 1 ]; then
        settle
        imgbuild_run imgbuild-gzip-f1 "$run" "$WORK/recipe-gzip.toml" "$d/img-gzip-f1" \
            --format-version 1
        rm -rf "$d/img-gzip-f1"
    fi

    settle
    imgbuild_run imgbuild-zstd "$run" "$WORK/recipe-zstd.toml" "$d/img-zstd" "${F2[@]}"
    rm -rf "$d/img-zstd"

    settle
    pipe_run tar-zstd "$run" "$d/layer.tar.zst" zstd -q -3 -T0
    rm -f "$d/layer.tar.zst"

    settle
    umoci_run "$run" "$d/umoci"
    rm -rf "$d/umoci"

    if [ "$BUILDAH" -eq 1 ]; then
        settle
        buildah_run "$run" "$d/buildah"
        rm -rf "$d/buildah"
    fi
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
log "1/5/15-min load average after the runs (includes the benchmark itself): $LOAD_END"

# --- determinism side check ----------------------------------------------------------
# Every gzip build (cold and rebuild, every run) must give one digest, and every zstd
# build one digest. A failure is reported loudly, in the table and the doc too, and makes
# the script exit 1 after the report (the timings are still worth having).
DETERMINISM=ok
for name in imgbuild-gzip imgbuild-gzip-f1 imgbuild-zstd; do
    grep -qE "^${name}"$'\t' "$RES" || continue
    pat=$name
    [ "$name" = imgbuild-gzip ] && pat='imgbuild-gzip(-rebuild)?'
    digests=$(grep -E "^${pat}"$'\t' "$RES" | cut -f6 | sort -u)
    n=$(echo "$digests" | wc -l)
    if [ "$n" -ne 1 ]; then
        echo "bench/run.sh: DETERMINISM FAILURE: $name gave $n different digests over the runs:" >&2
        grep -E "^${pat}"$'\t' "$RES" | cut -f1,2,5,6 >&2
        msg="$name gave $n different image digests over $(grep -cE "^${pat}"$'\t' "$RES") builds of the same recipe (layer sizes $(grep -E "^${pat}"$'\t' "$RES" | cut -f5 | sort -u | paste -sd/ -) bytes)"
        if [ "$DETERMINISM" = ok ]; then DETERMINISM="FAILED: $msg"; else DETERMINISM="$DETERMINISM; $msg"; fi
    else
        log "determinism: every $name build gave $digests"
    fi
done

# --- machine ---------------------------------------------------------------------------
MACHINE=$WORK/machine.txt
{
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "ram=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
    echo "kernel=$(uname -sr)"
    echo "pigz=$(pigz --version 2>&1 | head -n1)"
    echo "zstd=$(zstd --version 2>&1 | head -n1 | sed 's/^\** *//; s/ *\**$//')"
    echo "umoci=$(umoci --version 2>&1 | head -n1)"
    [ "$BUILDAH" -eq 0 ] || echo "buildah=$(buildah --version 2>&1 | head -n1)"
    echo "formats=$FORMATS"
    echo "skopeo=$(skopeo --version 2>&1 | head -n1)"
    echo "registry=$(docker-registry --version 2>&1 | head -n1)"
    echo "tar=$(tar --version | head -n1)"
    echo "imgbuild=$("$IMGBUILD" --version 2>&1 | head -n1)"
    echo "rustc=$(rustc --version 2>/dev/null || echo unknown)"
    commit=$(git -C "$REPO" --no-optional-locks rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$REPO" --no-optional-locks status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
        commit="$commit (with uncommitted changes in src/ or Cargo.*)"
    fi
    echo "commit=$commit"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "load_start=$LOAD_START"
    echo "load_end=$LOAD_END"
    echo "determinism=$DETERMINISM"
    echo "scale=$SCALE"
    echo "runs=$RUNS"
    echo "corpus_bytes=$CORPUS_BYTES"
    echo "corpus_entries=$CORPUS_ENTRIES"
    printf 'command=bash bench/run.sh'
    [ ${#ORIG_ARGS[@]} -eq 0 ] || printf ' %q' "${ORIG_ARGS[@]}"
    echo
} > "$MACHINE"

if [ -f "$WORK/requests.tsv" ]; then
    echo "requests_file=$WORK/requests.tsv" >> "$MACHINE"
    echo "push_blobs=$(cat "$WORK/push_blobs")" >> "$MACHINE"
fi
REPORT_ARGS=("$RES" "$MACHINE")
[ "$WRITE_DOC" -eq 1 ] && REPORT_ARGS+=(--write-doc "$REPO/docs/benchmarks.md")
python3 "$REPO/bench/report.py" "${REPORT_ARGS[@]}"
if [ "$DETERMINISM" != ok ]; then
    echo "bench/run.sh: DETERMINISM $DETERMINISM" >&2
    exit 1
fi
