#!/usr/bin/env bash
# bench/cache.sh — the shared layer cache, side by side: machine A's cold build, the
# same with --cache-to, machine B's build of a copy of the corpus (another path, new
# mtimes, an empty --out) with --cache-from, and B's build with --cache-from and
# --push to the cache's registry, with a layout and with --no-out. See
# docs/benchmarks.md ("Shared layer cache").
#
# Usage: bash bench/cache.sh [--scale S] [--runs N] [--work DIR] [--imgbuild PATH]
#
#   --scale S     corpus scale for ../shared/bench/make-corpus.py (default 1.0)
#   --runs N      rounds, each with a fresh registry; the median is reported (default 3)
#   --work DIR    scratch directory (default: a fresh mktemp -d, removed at exit)
#   --imgbuild P  the binary to time (default: target/release/imgbuild, built first)
#
# Prints a Markdown table on stdout; progress goes to stderr. The corpus is built with
# the default compression (gzip) and the newest format version.
set -euo pipefail

SCALE=1.0
RUNS=3
WORK=""
IMGBUILD=""

die() { echo "bench/cache.sh: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --scale) [ $# -ge 2 ] || die "--scale needs a value"; SCALE=$2; shift 2 ;;
        --runs) [ $# -ge 2 ] || die "--runs needs a value"; RUNS=$2; shift 2 ;;
        --work) [ $# -ge 2 ] || die "--work needs a value"; WORK=$2; shift 2 ;;
        --imgbuild) [ $# -ge 2 ] || die "--imgbuild needs a path"; IMGBUILD=$2; shift 2 ;;
        -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (try --help)" ;;
    esac
done
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer, not '$RUNS'"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MAKE_CORPUS=${IMGBUILD_MAKE_CORPUS:-$REPO/../shared/bench/make-corpus.py}
[ -f "$MAKE_CORPUS" ] || die "corpus generator not found at $MAKE_CORPUS"
for tool in docker-registry curl /usr/bin/time python3; do
    command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool (apt-get install -y docker-registry curl time python3)"
done
if [ -z "$IMGBUILD" ]; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --quiet) >&2
    IMGBUILD=$REPO/target/release/imgbuild
fi
[ -x "$IMGBUILD" ] || die "no imgbuild binary at $IMGBUILD"

if [ -z "$WORK" ]; then
    WORK=$(mktemp -d /tmp/imgbuild-cache-bench.XXXXXX)
    trap 'reg_stop; rm -rf "$WORK"' EXIT
else
    mkdir -p "$WORK"
    trap 'reg_stop' EXIT
fi

REG_PID=""
REG_PORT=""
reg_start() {
    local dir=$1
    rm -rf "$dir"; mkdir -p "$dir/storage"
    REG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$REG_PORT
  secret: imgbuild-bench
EOF
    docker-registry serve "$dir/config.yml" > "$dir/registry.log" 2>&1 &
    REG_PID=$!
    local i
    for i in $(seq 1 100); do
        curl -fs "http://127.0.0.1:$REG_PORT/v2/" > /dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "docker-registry did not answer on 127.0.0.1:$REG_PORT"
}
reg_stop() {
    [ -n "$REG_PID" ] || return 0
    kill "$REG_PID" 2>/dev/null || true
    wait "$REG_PID" 2>/dev/null || true
    REG_PID=""
}

# A context: the corpus and its recipe (default compression, newest format).
make_context() {
    local dir=$1
    mkdir -p "$dir"
    cp -r "$WORK/corpus" "$dir/corpus"
    cat > "$dir/recipe.toml" <<EOF
[image]
source-date-epoch = 0

[[layer]]
name = "corpus"
  [[layer.copy]]
  src = "corpus/"
  dst = "/"
EOF
}

if [ ! -d "$WORK/corpus" ]; then
    log "generating corpus (scale $SCALE)"
    python3 "$MAKE_CORPUS" "$WORK/corpus" --scale "$SCALE" >&2
fi
CORPUS_BYTES=$(du -sb --apparent-size "$WORK/corpus" | cut -f1)

RES=$WORK/results.tsv   # contender  run  wall_s  digest  sources
: > "$RES"
timed() {
    local name=$1 run=$2; shift 2
    local t=$WORK/t.$name.$run
    /usr/bin/time -f "%e" -o "$t.time" "$IMGBUILD" "$@" --json -q > "$t.json"
    local digest sources
    digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["digest"])' "$t.json")
    sources=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(",".join(l["source"] for m in d["manifests"] for l in m["layers"]))' "$t.json")
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$run" "$(cat "$t.time")" "$digest" "$sources" >> "$RES"
}

for run in $(seq 1 "$RUNS"); do
    log "round $run of $RUNS"
    d=$WORK/run$run
    # The last round's trees are no machine's any more: freeing them lets this round
    # reuse their memory, as a long-running machine would.
    rm -rf "$WORK"/run*; mkdir -p "$d"
    reg_start "$d/registry"
    cache=127.0.0.1:$REG_PORT/cache
    make_context "$d/a"
    # The copy's dirty pages are written back now, not during a timed build.
    sync
    timed cold "$run" build "$d/a/recipe.toml" --out "$d/a/out-cold"
    timed cold-cache-to "$run" build "$d/a/recipe.toml" --out "$d/a/out" --cache-to "$cache"
    # Machine B: another path, every mtime new, empty --out, and none of A's files.
    rm -rf "$d/a"
    make_context "$d/b"
    find "$d/b/corpus" -type f -exec touch {} +
    sync
    timed warm-cache-from "$run" build "$d/b/recipe.toml" --out "$d/b/out" --cache-from "$cache"
    timed warm-cache-from-push "$run" build "$d/b/recipe.toml" --out "$d/b/out-push" \
        --cache-from "$cache" "--push=127.0.0.1:$REG_PORT/app:1"
    # The same push keeping no layout: the cached layer is mounted, never downloaded.
    timed warm-cache-from-push-no-out "$run" build "$d/b/recipe.toml" --no-out \
        --cache-from "$cache" "--push=127.0.0.1:$REG_PORT/app-no-out:1"
    reg_stop
done

n=$(cut -f4 "$RES" | sort -u | wc -l)
[ "$n" -eq 1 ] || die "the builds gave $n different digests: $(cut -f1,4 "$RES")"

python3 - "$RES" "$CORPUS_BYTES" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
by = {}
for name, run, wall, digest, sources in rows:
    by.setdefault(name, []).append((float(wall), sources))
cold = statistics.median(w for w, _ in by["cold"])
print(f"corpus: {int(sys.argv[2]) / 1e6:.0f} MB, {len(by['cold'])} rounds, median wall time\n")
print("| build | median wall (s) | runs (s) | of cold | layer sources |")
print("|---|---:|---|---:|---|")
for name in ["cold", "cold-cache-to", "warm-cache-from", "warm-cache-from-push", "warm-cache-from-push-no-out"]:
    walls = [w for w, _ in by[name]]
    m = statistics.median(walls)
    runs = ", ".join(f"{w:.2f}" for w in walls)
    print(f"| {name} | {m:.2f} | {runs} | {100 * m / cold:.0f}% | {by[name][0][1]} |")
EOF
