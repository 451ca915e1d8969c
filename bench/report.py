#!/usr/bin/env python3
"""Summarise bench/run.sh results: a Markdown table on stdout, and with --write-doc the
results section of docs/benchmarks.md (between the results markers) rewritten.

Usage: report.py RESULTS.tsv MACHINE.txt [--write-doc docs/benchmarks.md]

RESULTS.tsv: contender, run, wall seconds, max RSS KiB, output bytes, digest (tab-separated).
MACHINE.txt: key=value lines written by bench/run.sh.
"""
import os
import statistics
import sys

START = "<!-- results:start -->"
END = "<!-- results:end -->"

# contender -> (label, what was run, baseline contender or None)
CONTENDERS = [
    ("imgbuild-gzip", "imgbuild build, gzip format 2 (cold)",
     "`imgbuild build recipe-gzip.toml --out NEW --json -q --format-version 2`", "tar-pigz"),
    ("imgbuild-gzip-f1", "imgbuild build, gzip format 1 (cold)",
     "`imgbuild build recipe-gzip.toml --out NEW --json -q --format-version 1`", "tar-pigz"),
    ("tar-pigz", "tar \\| pigz -n -6 (baseline)",
     "`tar --sort=name … -cf - . \\| pigz -n -6 > layer.tar.gz`", None),
    ("imgbuild-zstd", "imgbuild build, zstd (cold)",
     "`imgbuild build recipe-zstd.toml --out NEW --json -q`", "tar-zstd"),
    ("tar-zstd", "tar \\| zstd -3 -T0 (baseline)",
     "`tar --sort=name … -cf - . \\| zstd -q -3 -T0 > layer.tar.zst`", None),
    ("umoci-insert", "umoci insert (gzip)",
     "`umoci insert --image L:t corpus /` into a fresh `umoci init` + `umoci new` layout",
     "tar-pigz"),
    ("buildah", "buildah build + push to an OCI layout (gzip)",
     "`buildah build --timestamp 0 -f Containerfile` (`FROM scratch`, `COPY . /`), then "
     "`buildah push IMG oci:L:t`", "tar-pigz"),
    ("imgbuild-gzip-rebuild", "imgbuild rebuild, nothing changed (gzip)",
     "the same build again into the same `--out`, right after the cold one", "imgbuild-gzip"),
    ("imgbuild-push", "imgbuild push (gzip image, fresh registry)",
     "`imgbuild push -q oci:LAYOUT 127.0.0.1:PORT/bench/imgbuild:t`", "skopeo-copy"),
    ("skopeo-copy", "skopeo copy (baseline, fresh registry)",
     "`skopeo copy oci:LAYOUT docker://127.0.0.1:PORT/bench/skopeo:t`", None),
    ("imgbuild-repush", "imgbuild push again, nothing new",
     "the same `imgbuild push`, right after the first", "skopeo-recopy"),
    ("skopeo-recopy", "skopeo copy again, nothing new (baseline)",
     "the same `skopeo copy`, right after the first", None),
]

# Contenders whose output column is the bytes pushed (the layout's blobs), not a layer.
PUSHES = {"imgbuild-push", "skopeo-copy", "imgbuild-repush", "skopeo-recopy"}


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            name, run, wall, rss, size, digest = line.split("\t")
            rows.setdefault(name, []).append(
                dict(run=int(run), wall=float(wall), rss=int(rss), size=int(size), digest=digest))
    return rows


def machine(path):
    m = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            m[k] = v
    return m


def summarise(rows):
    s = {}
    for name, rs in rows.items():
        s[name] = dict(
            wall=statistics.median(r["wall"] for r in rs),
            walls=[r["wall"] for r in rs],
            rss_mb=max(r["rss"] for r in rs) * 1024 / 1e6,
            size=statistics.median(r["size"] for r in rs),
        )
    return s


def fmt_ratio(x):
    return f"{x:.2f}×"


def pct(x):
    return f"{x * 100:+.1f}%"


def results_table(s, m=None):
    default_format = (m or {}).get("formats") == "0"
    out = [
        "| contender | median wall (s) | runs (s) | peak RSS (MB) | output (MB) | wall vs baseline | size vs baseline |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for key, label, _cmd, base in CONTENDERS:
        if key not in s:
            continue
        r = s[key]
        if default_format and key == "imgbuild-gzip":
            label = "imgbuild build, gzip, its default format (cold)"
        if base and base in s and s[base]["wall"] > 0:
            wr = fmt_ratio(r["wall"] / s[base]["wall"]) + f" of {base}"
        elif base:
            wr = "n/a"
        else:
            wr = "1.00× (baseline)"
        if key == "imgbuild-gzip-rebuild":
            sr = "(no new blob)"
            size = "—"
        elif key in PUSHES:
            size = f"{r['size'] / 1e6:.1f}"
            sr = "(the same blobs)"
        else:
            size = f"{r['size'] / 1e6:.1f}"
            if base and base in s:
                sr = pct(r["size"] / s[base]["size"] - 1)
            elif base:
                sr = "n/a"
            else:
                sr = "—"
        runs = ", ".join(f"{w:.2f}" for w in r["walls"])
        out.append(f"| {label} | {r['wall']:.2f} | {runs} | {r['rss_mb']:.1f} | {size} | {wr} | {sr} |")
    return "\n".join(out)


def requests(m):
    """contender -> list of {method: count} per run, from the requests file run.sh wrote."""
    out = {}
    path = m.get("requests_file")
    if not path:
        return out
    with open(path) as f:
        for line in f:
            name, _run, counts = line.rstrip("\n").split("\t")
            out.setdefault(name, []).append(
                {k: int(v) for k, v in (c.split("=") for c in counts.split())})
    return out


def requests_table(m):
    req = requests(m)
    if not req:
        return ""
    lines = ["| push | requests the registry logged (per run) |", "| --- | --- |"]
    for key, label, _cmd, _base in CONTENDERS:
        if key in req:
            runs = "; ".join(", ".join(f"{k} {v}" for k, v in r.items() if v) or "none" for r in req[key])
            lines.append(f"| {label} | {runs} |")
    return "\n".join(lines)


def verdicts(s, mach=None):
    """The targets of docs/benchmarks.md: (target, measured, verdict)."""
    out = []

    def wall_target(name, key, base, limit, note_if_missed=""):
        if key not in s or base not in s:
            return
        ratio = s[key]["wall"] / s[base]["wall"]
        if ratio <= limit:
            v = f"**met** ({(1 - ratio / limit) * 100:.0f}% under the limit)"
        else:
            need = (1 - limit / ratio) * 100
            v = (f"**missed** by {(ratio / limit - 1) * 100:.0f}% "
                 f"(imgbuild would need to be {need:.0f}% faster: "
                 f"{limit * s[base]['wall']:.2f} s instead of {s[key]['wall']:.2f} s)"
                 f"{note_if_missed}")
        out.append((name, f"{ratio:.2f}× ({s[key]['wall']:.2f} s vs {s[base]['wall']:.2f} s)", v))

    def size_target(name, key, base, band=0.02, one_sided=False):
        if key not in s or base not in s:
            return
        d = s[key]["size"] / s[base]["size"] - 1
        ok = d <= band if one_sided else abs(d) <= band
        v = "**met**" if ok else f"**missed** by {abs(d) * 100 - band * 100:.1f} points"
        if d < -band and not one_sided:
            v = "**outside the band, smaller** (imgbuild compresses better)"
        out.append((name, f"{pct(d)} ({s[key]['size'] / 1e6:.1f} MB vs {s[base]['size'] / 1e6:.1f} MB)", v))

    wall_target("gzip cold build ≤ 0.5 × tar | pigz -n -6", "imgbuild-gzip", "tar-pigz", 0.5)
    size_target("gzip size ≤ 1.01 × tar | pigz -n -6", "imgbuild-gzip", "tar-pigz", 0.01, True)
    wall_target("zstd cold build ≤ 0.8 × tar | zstd -3 -T0", "imgbuild-zstd", "tar-zstd", 0.8,
                " — out of reach on 2 cores, see \"The zstd target and the CPU it needs\""
                if int((mach or {}).get("nproc") or os.cpu_count() or 2) <= 2 else "")
    size_target("zstd size within 2% of tar | zstd", "imgbuild-zstd", "tar-zstd")
    rss = [s[k]["rss_mb"] for k in ("imgbuild-gzip", "imgbuild-gzip-f1", "imgbuild-zstd",
                                    "imgbuild-gzip-rebuild") if k in s]
    if rss:
        m = max(rss)
        v = "**met**" if m < 200 else f"**missed** by {m - 200:.0f} MB ({(m / 200 - 1) * 100:.0f}%)"
        out.append(("imgbuild peak RSS < 200 MB", f"{m:.1f} MB (max over all imgbuild runs)", v))
    if "imgbuild-gzip-rebuild" in s and "imgbuild-gzip" in s:
        ratio = s["imgbuild-gzip-rebuild"]["wall"] / s["imgbuild-gzip"]["wall"]
        if ratio <= 0.05:
            v = "**met**"
        else:
            v = (f"**missed**: {ratio * 100:.0f}% of the cold build, {ratio / 0.05:.1f}× the "
                 f"allowed 5% ({s['imgbuild-gzip-rebuild']['wall']:.2f} s, limit "
                 f"{0.05 * s['imgbuild-gzip']['wall']:.2f} s)")
        out.append(("rebuild, nothing changed ≤ 5% of cold", f"{ratio * 100:.1f}% of the cold gzip build", v))
    wall_target("push to a loopback registry ≤ 1.1 × skopeo copy", "imgbuild-push", "skopeo-copy", 1.1)
    req = requests(mach or {}).get("imgbuild-repush")
    if req and mach.get("push_blobs"):
        blobs = int(mach["push_blobs"])
        # The one GET is `GET /v2/`, the version check every client starts with.
        ok = all(r.get("HEAD") == blobs and r.get("PUT") == 1 and r.get("GET", 0) <= 1
                 and not any(r.get(k) for k in ("POST", "PATCH")) for r in req)
        got = "; ".join(", ".join(f"{k} {v}" for k, v in r.items() if v) for r in req)
        out.append(("re-push, nothing new: one HEAD per blob + the manifest (after one GET /v2/)",
                    f"{got} (the image has {blobs} blobs besides its manifest)",
                    "**met**" if ok else "**missed**"))
    lines = ["| target | measured | verdict |", "| --- | --- | --- |"]
    esc = lambda x: x.replace("|", "\\|")
    lines += [f"| {esc(a)} | {esc(b)} | {c} |" for a, b, c in out]
    return "\n".join(lines)


def section(s, m):
    load_note = ""
    try:
        if float(m.get("load_start", "0").split()[0]) > 1.0:
            load_note = (f"\n**Note:** the 1-minute load average was {m['load_start'].split()[0]} when the "
                         "script started: other work was running on the machine, and the timings "
                         "may be pessimistic for any contender.\n")
    except ValueError:
        pass
    det = m.get("determinism", "not checked")
    if det == "ok":
        det_line = ("Determinism check: **passed** — every gzip build (cold and rebuild, every run) "
                    "gave the same image digest, and so did every format 1 gzip build and every "
                    "zstd build.")
    else:
        det_line = f"Determinism check: **{det}** (same recipe, same digest)."
    entries = int(m.get("corpus_entries", "0"))
    return f"""
Measured {m.get('date', '?')} with

```
{m.get('command', '?')}
```

Corpus: `make-corpus.py --scale {m.get('scale')}`, {int(m.get('corpus_bytes', 0)) / 1e6:.1f} MB in {entries:,} entries.
{m.get('runs')} run(s) of every contender; the wall time is the median, the peak RSS the maximum
over the runs. MB = 10^6 bytes.

{results_table(s, m)}

{verdicts(s, m)}

{requests_table(m)}

{det_line}

Peak RSS of a pipeline is the larger of its two processes' (tar, compressor), each measured by
its own GNU time; the wall time is the whole pipeline's.

Machine:

| | |
| --- | --- |
| CPUs (`nproc`) | {m.get('nproc')} |
| CPU model | {m.get('cpu')} |
| RAM | {m.get('ram')} |
| kernel | {m.get('kernel')} |
| load average (1/5/15 min) at start / after the runs | {m.get('load_start')} / {m.get('load_end')} |
| imgbuild | {m.get('imgbuild')}, commit {m.get('commit')}, {m.get('rustc')} |
| pigz | {m.get('pigz')} |
| zstd | {m.get('zstd')} |
| umoci | {m.get('umoci')} |
| buildah | {m.get('buildah', 'not run')} |
| skopeo | {m.get('skopeo', 'not run')} |
| docker-registry | {m.get('registry', 'not run')} |
| tar | {m.get('tar')} |
{load_note}"""


def main():
    args = sys.argv[1:]
    doc = None
    if "--write-doc" in args:
        i = args.index("--write-doc")
        doc = args[i + 1]
        del args[i:i + 2]
    res, mach = args
    s = summarise(load(res))
    m = machine(mach)
    print(results_table(s, m))
    print()
    print(verdicts(s, m))
    print()
    print(requests_table(m))
    det = m.get("determinism", "not checked")
    print()
    print("Determinism check: " + ("passed" if det == "ok" else f"**{det}**"))
    if doc:
        text = open(doc).read()
        a, b = text.find(START), text.find(END)
        if a < 0 or b < a:
            sys.exit(f"report.py: {doc} has no {START} … {END} section")
        text = text[:a + len(START)] + "\n" + section(s, m).strip("\n") + "\n" + text[b:]
        with open(doc, "w") as f:
            f.write(text)
        print(f"\nwrote the results section of {doc}", file=sys.stderr)


if __name__ == "__main__":
    main()
