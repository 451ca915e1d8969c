//! `imgbuild version` (and `--version`): imgbuild's version, the newest format version
//! it writes and every format version it can rebuild.

use super::{write_report, Context};
use crate::cli::VersionArgs;
use imgbuild::format::FormatVersion;
use imgbuild::Result;

pub(super) fn run(args: VersionArgs, _ctx: &Context) -> Result<()> {
    if args.json {
        write_report(&json().to_string())
    } else {
        write_report(&text())
    }
}

fn rebuilds() -> Vec<u32> {
    FormatVersion::ALL.iter().map(|v| v.number()).collect()
}

/// `imgbuild 0.1.0`, then the format versions (also what `--version` prints).
fn text() -> String {
    let list: Vec<String> = rebuilds().iter().map(u32::to_string).collect();
    format!(
        "imgbuild {}\nwrites format version {} (the newest)\nrebuilds format versions {}",
        imgbuild::VERSION,
        FormatVersion::NEWEST,
        list.join(", ")
    )
}

/// `imgbuild version --json`.
fn json() -> serde_json::Value {
    serde_json::json!({
        "version": imgbuild::VERSION,
        "newestFormatVersion": FormatVersion::NEWEST.number(),
        "formatVersions": rebuilds(),
    })
}
