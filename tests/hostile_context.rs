//! A hostile build context (docs/security.md): someone who can write to the context
//! while imgbuild builds from it must not get a file from outside the context into a
//! layer, nor a torn layer out of a build that exits 0.

mod common;

use common::{imgbuild, stderr};
use std::fs;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Every blob of the layout at `out`, as bytes.
fn blobs(out: &Path) -> Vec<Vec<u8>> {
    let dir = out.join("blobs/sha256");
    let Ok(list) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    list.map(|e| fs::read(e.expect("entry").path()).expect("read blob"))
        .collect()
}

/// The content of the tar entry `name` in any (uncompressed) layer blob of `out`.
fn entry_content(out: &Path, name: &str) -> Option<Vec<u8>> {
    for blob in blobs(out) {
        let mut archive = tar::Archive::new(&blob[..]);
        let Ok(entries) = archive.entries() else {
            continue;
        };
        for e in entries {
            let Ok(mut e) = e else { break };
            if e.path_bytes().as_ref() == name.as_bytes() {
                let mut data = Vec::new();
                e.read_to_end(&mut data).expect("read entry");
                return Some(data);
            }
        }
    }
    None
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Runs `body` on a thread until the returned guard is dropped.
struct Background {
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Background {
    fn run(mut body: impl FnMut() + Send + 'static) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                body();
            }
        });
        Background {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Builds repeatedly while `attack` runs, until `max_builds` builds or `budget` of
/// wall time (a bound on the test's length, not an assertion); checks every result.
fn race(
    recipe: &Path,
    out_root: &Path,
    max_builds: usize,
    budget: Duration,
    mut check: impl FnMut(&std::process::Output, &Path),
) -> usize {
    let start = Instant::now();
    let mut n = 0;
    while n < max_builds && start.elapsed() < budget {
        let out = out_root.join(format!("out{n}"));
        let o = imgbuild()
            .arg("build")
            .arg(recipe)
            .arg("--out")
            .arg(&out)
            .arg("--no-cache")
            .output()
            .expect("run imgbuild");
        check(&o, &out);
        let _ = fs::remove_dir_all(&out);
        n += 1;
    }
    n
}

#[test]
fn a_directory_swapped_for_a_symlink_during_the_build_never_leaks_outside_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ctx = tmp.path().join("ctx");
    let outside = tmp.path().join("outside");
    let inside = vec![b'i'; 4096];
    let mut secret = b"TOP-SECRET-OUTSIDE-THE-CONTEXT".to_vec();
    secret.resize(4096, b's');
    for sub in ["", "tree"] {
        fs::create_dir_all(ctx.join("d").join(sub)).expect("mkdir");
        fs::create_dir_all(outside.join(sub)).expect("mkdir");
        fs::write(ctx.join("d").join(sub).join("a.txt"), &inside).expect("write");
        fs::write(outside.join(sub).join("a.txt"), &secret).expect("write");
    }
    // One single-file copy (parent checked, then opened) and one directory walk.
    fs::write(
        ctx.join("recipe.toml"),
        "[image]\ncompression = \"none\"\n\n[[layer]]\nname = \"l\"\n\
         [[layer.copy]]\nsrc = \"d/a.txt\"\ndst = \"/a.txt\"\n\
         [[layer.copy]]\nsrc = \"d/tree\"\ndst = \"/tree\"\n",
    )
    .expect("recipe");
    let (d, real, out) = (ctx.join("d"), ctx.join("d.real"), tmp.path().join("outs"));
    let swapper = Background::run(move || {
        if fs::rename(&d, &real).is_ok() {
            let _ = std::os::unix::fs::symlink(&outside, &d);
            thread::yield_now();
            let _ = fs::remove_file(&d);
            let _ = fs::rename(&real, &d);
        }
        thread::yield_now();
    });
    let mut failed = 0;
    let builds = race(
        &ctx.join("recipe.toml"),
        &out,
        400,
        Duration::from_secs(5),
        |o, out| {
            let err = stderr(o);
            for blob in blobs(out) {
                assert!(
                    !contains(&blob, b"TOP-SECRET"),
                    "a file from outside the context reached the layout (exit {:?}): {err}",
                    o.status.code()
                );
            }
            if !o.status.success() {
                failed += 1;
                assert!(matches!(o.status.code(), Some(2 | 3)), "{err}");
                assert!(
                    err.contains("symlink")
                        || err.contains("changed")
                        || err.contains("does not exist")
                        || err.contains("No such file"),
                    "the error says what happened: {err}"
                );
            }
        },
    );
    drop(swapper);
    assert!(builds > 0 && failed <= builds);
}

#[test]
fn a_source_rewritten_in_place_while_read_fails_the_build_instead_of_tearing_the_layer() {
    let tmp = tempfile::tempdir().expect("tmp");
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).expect("mkdir");
    const SIZE: usize = 8 << 20;
    fs::write(ctx.join("big"), vec![b'a'; SIZE]).expect("write");
    fs::write(
        ctx.join("recipe.toml"),
        "[image]\ncompression = \"none\"\n\n[[layer]]\nname = \"l\"\n\
         [[layer.copy]]\nsrc = \"big\"\ndst = \"/big\"\n",
    )
    .expect("recipe");
    let big = ctx.join("big");
    let mut fill = b'a';
    // Rewrites the file in place, same size, 1 MiB at a time: a reader sees a mix.
    let writer = Background::run(move || {
        fill = if fill == b'a' { b'b' } else { b'a' };
        let f = fs::OpenOptions::new().write(true).open(&big).expect("open");
        let chunk = vec![fill; 1 << 20];
        for i in 0..SIZE / chunk.len() {
            f.write_all_at(&chunk, (i * chunk.len()) as u64)
                .expect("rewrite");
        }
    });
    let mut torn = 0;
    let builds = race(
        &ctx.join("recipe.toml"),
        &tmp.path().join("outs"),
        30,
        Duration::from_secs(6),
        |o, out| {
            let err = stderr(o);
            if o.status.success() {
                let data = entry_content(out, "big").expect("the layer has /big");
                let whole = data.iter().all(|&b| b == data[0]);
                if !whole {
                    torn += 1;
                }
            } else {
                assert_eq!(o.status.code(), Some(3), "{err}");
                assert!(
                    err.contains("big") && err.contains("changed while it was being read"),
                    "the error names the file: {err}"
                );
            }
        },
    );
    drop(writer);
    assert!(builds > 0);
    assert_eq!(
        torn, 0,
        "{torn} of {builds} builds exited 0 with a layer matching neither version"
    );
}
