//! `[base]`: the image a build starts from. `scratch`, `oci:DIR@sha256:…` (a local
//! OCI layout, pinned by digest; DIR is relative to the context), or a registry
//! reference `host/repo[:tag][@sha256:…]`, pulled into the output layout
//! (`registry::pull`) and then read from there like a layout base. Base layers and base
//! history are used as they are: never rewritten, never recompressed.

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{Descriptor, ImageConfig, Index, Manifest};
use crate::layout::Layout;
use crate::platform::Platform;
use crate::recipe::Recipe;
use crate::reference::{Reference, RegistryRef};

#[derive(Debug)]
pub struct BaseImage {
    /// The reference as written in the recipe (recorded in the base.name annotation).
    pub name: String,
    pub layout: Layout,
    pub digest: Digest,
}

/// The base's manifest for one platform.
#[derive(Debug)]
pub struct BasePlatform {
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
}

/// Where the base comes from, as the recipe says.
#[derive(Debug)]
pub enum BaseSource {
    /// `oci:DIR@sha256:…`, opened and checked.
    Layout(BaseImage),
    /// `host/repo[:tag][@sha256:…]`: pulled into the output layout by the build.
    Registry {
        /// As written in the recipe (the base.name annotation).
        name: String,
        reference: RegistryRef,
        /// Where the recipe writes it, for errors about it.
        span: std::ops::Range<usize>,
    },
}

/// Reads `[base] image` from the recipe; `None` for scratch.
pub fn resolve(recipe: &Recipe) -> Result<Option<BaseSource>> {
    let Some(spanned) = &recipe.base.image else {
        return Ok(None);
    };
    let name = spanned.get_ref();
    if name == "scratch" {
        return Ok(None);
    }
    if let Some(e) = recipe.credentials_in_reference(spanned.span(), name, "base image") {
        return Err(e);
    }
    let err = |m: String| recipe.error_at(spanned.span(), m);
    let Some(rest) = name.strip_prefix("oci:") else {
        return match Reference::parse(name) {
            Ok(Reference::Registry(reference)) => Ok(Some(BaseSource::Registry {
                name: name.clone(),
                reference,
                span: spanned.span(),
            })),
            Ok(Reference::Layout { .. }) | Err(_) => {
                let why = Reference::parse(name).err().unwrap_or_default();
                Err(err(format!(
                    "base image {name:?} is not a valid reference: {why}"
                ))
                .with_hint("write \"scratch\", \"host/repo:tag@sha256:…\" or \"oci:DIR@sha256:…\""))
            }
        };
    };
    let Some((dir, digest)) = rest.rsplit_once('@') else {
        return Err(err(format!("base image {name:?} is not pinned by digest"))
            .with_hint("write image = \"oci:DIR@sha256:<digest>\" (see `skopeo inspect oci:DIR` or DIR/index.json)"));
    };
    let digest =
        Digest::parse(digest).ok_or_else(|| err(format!("{digest:?} is not a sha256 digest")))?;
    let path = recipe.context.join(dir);
    let layout = Layout::open(&path).map_err(|e| {
        err(format!("base layout {dir:?}: {}", e.message())).with_hint(
            e.hint()
                .unwrap_or("check the path, which is relative to the recipe's directory")
                .to_string(),
        )
    })?;
    if !layout.has_blob(&digest) {
        return Err(err(format!("base layout {dir:?} holds no blob {digest}")));
    }
    Ok(Some(BaseSource::Layout(BaseImage {
        name: name.clone(),
        layout,
        digest,
    })))
}

impl BaseImage {
    /// The base's manifest, config and layers for `platform`.
    pub fn for_platform(&self, platform: &Platform) -> Result<BasePlatform> {
        let bytes = self.layout.read_blob(&self.digest)?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| self.bad(format!("{e}")))?;
        let is_index = crate::image::is_index_value(&value);
        let manifest_digest = if is_index {
            let index: Index =
                serde_json::from_value(value).map_err(|e| self.bad(format!("{e}")))?;
            select_platform(&index, platform, &self.name)?
        } else {
            self.digest.clone()
        };
        let manifest: Manifest = serde_json::from_slice(&self.layout.read_blob(&manifest_digest)?)
            .map_err(|e| self.bad(format!("manifest {manifest_digest}: {e}")))?;
        let config: ImageConfig =
            serde_json::from_slice(&self.layout.read_blob(&manifest.config.digest)?)
                .map_err(|e| self.bad(format!("config {}: {e}", manifest.config.digest)))?;
        if config.os != platform.os || config.architecture != platform.architecture {
            return Err(Error::input(format!(
                "base image {} is for {}/{}, not {platform}",
                self.name, config.os, config.architecture
            ))
            .with_hint("pin the base by its index digest, or build for the base's platform"));
        }
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(
                self.bad("its config lists a different number of layers than its manifest".into())
            );
        }
        for layer in &manifest.layers {
            if !self.layout.has_blob(&layer.digest) {
                return Err(self.bad(format!("layer {} is missing from the layout", layer.digest)));
            }
        }
        Ok(BasePlatform {
            manifest_digest,
            config,
            layers: manifest.layers,
        })
    }

    fn bad(&self, what: String) -> Error {
        Error::input(format!(
            "base image {} is not a valid OCI image: {what}",
            self.name
        ))
    }
}

/// The manifest of `index` for `platform` (a platform without a variant matches any
/// variant); an error listing the index's platforms when there is none.
pub fn select_platform(index: &Index, platform: &Platform, name: &str) -> Result<Digest> {
    let found = index.manifests.iter().find(|m| {
        m.platform.as_ref().is_some_and(|p| {
            p.os == platform.os
                && p.architecture == platform.architecture
                && (platform.variant.is_none() || p.variant == platform.variant)
        })
    });
    match found {
        Some(m) => Ok(m.digest.clone()),
        None => {
            let have: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .map(|p| {
                    format!(
                        "{}/{}{}",
                        p.os,
                        p.architecture,
                        p.variant
                            .as_ref()
                            .map(|v| format!("/{v}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            Err(
                Error::input(format!("base image {name} has no manifest for {platform}"))
                    .with_hint(format!("it has: {}", have.join(", "))),
            )
        }
    }
}
