//! `imgbuild tags REPO`: the tags of a registry repository (every page of
//! `/v2/<name>/tags/list`), of an OCI layout or of an archive, one per line (`crane ls`).

use super::{image_ref, write_report, Context};
use crate::cli::TagsArgs;
use imgbuild::reference::{has_explicit_tag, Reference};
use imgbuild::{Error, Result};

pub(super) fn run(args: TagsArgs, ctx: &Context) -> Result<()> {
    let reference = image_ref(&args.repository, "REPO")?;
    let names_an_image = match &reference {
        Reference::Layout { tag, digest, .. } => tag.is_some() || digest.is_some(),
        Reference::Registry(r) => r.digest.is_some() || has_explicit_tag(&args.repository),
        Reference::Archive { tag, .. } => tag.is_some(),
    };
    if names_an_image {
        return Err(Error::input(format!(
            "REPO {:?} names an image; `imgbuild tags` lists a repository's tags",
            args.repository
        ))
        .with_hint("drop the :TAG or @sha256:…, e.g. `imgbuild tags 127.0.0.1:5000/acme/hello` or `imgbuild tags oci:DIR`"));
    }
    let tags = imgbuild::source::tags(&reference, &ctx.registry_options(), args.page_size)?;
    if args.json {
        let repository = match &reference {
            Reference::Registry(r) => format!("{}/{}", r.registry, r.repository),
            Reference::Layout { dir, .. } => format!("oci:{}", dir.display()),
            Reference::Archive { kind, file, .. } => format!("{}{}", kind.prefix(), file.display()),
        };
        write_report(&serde_json::json!({"repository": repository, "tags": tags}).to_string())
    } else if tags.is_empty() {
        Ok(())
    } else {
        write_report(&tags.join("\n"))
    }
}
