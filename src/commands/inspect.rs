//! `imgbuild inspect`: show an image's index, manifests, configs and layers.

use super::{write_report, Context};
use crate::cli::InspectArgs;
use imgbuild::reference::Reference;
use imgbuild::{Error, Result};

pub(super) fn run(args: InspectArgs, ctx: &Context) -> Result<()> {
    let reference = Reference::parse(&args.reference).map_err(Error::input)?;
    let i = imgbuild::inspect::inspect(&reference, &ctx.registry_options())?;
    let text = if args.json {
        serde_json::json!({
            "reference": i.reference,
            "digest": i.digest,
            "mediaType": i.media_type,
            "size": i.size,
            "index": i.index,
            "manifests": i.manifests.iter().map(|m| serde_json::json!({
                "platform": m.platform, "digest": m.digest, "size": m.size,
                "manifest": m.manifest, "config": m.config,
            })).collect::<Vec<_>>(),
        })
        .to_string()
    } else {
        inspect_text(&i)
    };
    write_report(&text)
}

fn inspect_text(i: &imgbuild::inspect::Inspected) -> String {
    use serde_json::Value;
    let mut s = format!(
        "{}
  digest      {}
  media type  {} ({} bytes)
",
        i.reference, i.digest, i.media_type, i.size
    );
    for m in &i.manifests {
        let c = &m.config;
        let cc = &c["config"];
        s.push_str(&format!(
            "
{}  manifest {} ({} bytes)
",
            m.platform.as_deref().unwrap_or("(no platform)"),
            m.digest,
            m.size
        ));
        let field = |s: &mut String, name: &str, v: &Value| {
            if !v.is_null() {
                let text = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                s.push_str(&format!(
                    "  {name:<11} {text}
"
                ));
            }
        };
        field(&mut s, "created", &c["created"]);
        field(&mut s, "config", &m.manifest["config"]["digest"]);
        for (name, key) in [
            ("user", "User"),
            ("entrypoint", "Entrypoint"),
            ("cmd", "Cmd"),
            ("workdir", "WorkingDir"),
            ("env", "Env"),
            ("ports", "ExposedPorts"),
            ("volumes", "Volumes"),
            ("labels", "Labels"),
            ("stop signal", "StopSignal"),
        ] {
            field(&mut s, name, &cc[key]);
        }
        if let Some(a) = m.manifest.get("annotations") {
            field(&mut s, "annotations", a);
        }
        s.push_str(
            "  layers
",
        );
        let layers = m.manifest["layers"].as_array().cloned().unwrap_or_default();
        let diff_ids = c["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let history: Vec<&Value> = c["history"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter(|e| e["empty_layer"] != Value::Bool(true))
                    .collect()
            })
            .unwrap_or_default();
        for (n, l) in layers.iter().enumerate() {
            let kind = l["mediaType"]
                .as_str()
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or("?");
            s.push_str(&format!(
                "    {}  {:>10} bytes  {kind:<8}  diff_id {}  {}\n",
                l["digest"].as_str().unwrap_or("?"),
                l["size"],
                diff_ids.get(n).and_then(Value::as_str).unwrap_or("?"),
                history
                    .get(n)
                    .and_then(|h| h["created_by"].as_str())
                    .unwrap_or("")
            ));
        }
    }
    s
}
