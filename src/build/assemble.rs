//! Image assembly: config, manifest and (for several platforms) index, from the layer
//! blobs written and the recipe's config. Written to the layout as blobs; the index
//! entry and tags are the caller's last step.

use super::PlatformImage;
use crate::base::{BaseImage, BasePlatform};
use crate::digest::Digest;
use crate::epoch::SourceDateEpoch;
use crate::error::Result;
use crate::format::{self, FormatVersion};
use crate::image::{self, canonical_json, Descriptor, ImageConfig, Index, Manifest, PlatformJson};
use crate::layer::LayerBlob;
use crate::layout::Layout;
use crate::plan::Plan;
use crate::recipe::Recipe;
use std::collections::BTreeMap;

/// What every platform's image of a build shares.
pub struct Image<'a> {
    pub recipe: &'a Recipe,
    pub base: Option<&'a BaseImage>,
    pub epoch: &'a SourceDateEpoch,
    pub user: Option<&'a str>,
    pub format: FormatVersion,
}

/// Writes one platform's config and manifest: the base's (if any) with the recipe's
/// config applied and the plan's layers appended.
pub fn assemble(
    image: &Image<'_>,
    plan: &Plan,
    base_platform: Option<&BasePlatform>,
    blobs: &[LayerBlob],
    layout: &Layout,
) -> Result<PlatformImage> {
    let Image {
        recipe,
        base,
        epoch,
        user,
        format,
    } = *image;
    let created = epoch.rfc3339();
    let mut config = ImageConfig::default();
    let mut layers: Vec<Descriptor> = Vec::new();
    let base_layers = base_platform.map_or(0, |bp| bp.layers.len());
    if let Some(bp) = base_platform {
        let b = &bp.config;
        config.config = b.config.clone();
        config.rootfs.diff_ids = b.rootfs.diff_ids.clone();
        config.history = b.history.clone();
        config.extra = b.extra.clone();
        layers = bp.layers.clone();
    }
    let c = &recipe.config;
    let cc = &mut config.config;
    if let Some(e) = &c.entrypoint {
        cc.entrypoint = Some(e.clone());
        // As in a Dockerfile: a new entrypoint drops the base's cmd.
        cc.cmd = None;
    }
    if let Some(cmd) = &c.cmd {
        cc.cmd = Some(cmd.clone());
    }
    merge_env(&mut cc.env, &c.env);
    if let Some(w) = &c.workdir {
        cc.working_dir = Some(w.get_ref().clone());
    }
    if let Some(u) = user {
        cc.user = Some(u.to_string());
    }
    for p in &c.exposed_ports {
        let p = p.get_ref();
        let key = if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        };
        cc.exposed_ports.insert(key, serde_json::json!({}));
    }
    for v in &c.volumes {
        cc.volumes
            .insert(v.get_ref().clone(), serde_json::json!({}));
    }
    cc.labels
        .extend(c.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(s) = &c.stop_signal {
        cc.stop_signal = Some(s.get_ref().clone());
    }
    config.created = Some(created.clone());
    config.architecture = plan.platform.architecture.clone();
    config.os = plan.platform.os.clone();
    config.variant = plan.platform.variant.clone();
    let mut diff_ids = Vec::new();
    for (l, b) in plan.layers.iter().zip(blobs) {
        config.rootfs.diff_ids.push(b.diff_id.clone());
        config.history.push(image::history_entry(
            &created,
            &format!("imgbuild: layer {}", l.name),
        ));
        layers.push(Descriptor::new(b.media_type, b.digest.clone(), b.size));
        diff_ids.push(b.diff_id.clone());
    }
    let config_bytes = canonical_json(&config);
    let config_digest = layout.write_blob(&config_bytes)?;
    let mut annotations = recipe.annotations.clone();
    if let (Some(b), Some(bp)) = (base, base_platform) {
        annotations.insert(image::ANNOTATION_BASE_NAME.into(), b.name.clone());
        annotations.insert(
            image::ANNOTATION_BASE_DIGEST.into(),
            bp.manifest_digest.to_string(),
        );
    }
    if format.annotates() {
        annotations.insert(format::ANNOTATION.into(), format.to_string());
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(image::MANIFEST_V1.into()),
        config: Descriptor::new(
            image::CONFIG_V1,
            config_digest.clone(),
            config_bytes.len() as u64,
        ),
        layers: layers.clone(),
        annotations,
    };
    let bytes = canonical_json(&manifest);
    let digest = layout.write_blob(&bytes)?;
    Ok(PlatformImage {
        platform: plan.platform.clone(),
        digest,
        size: bytes.len() as u64,
        config: config_digest,
        layers,
        diff_ids: config.rootfs.diff_ids.clone(),
        base_layers,
        layer_sources: Vec::new(),
    })
}

/// The image's root: the one manifest, or an index over several. Returns its digest,
/// media type and size.
pub fn write_root(
    recipe: &Recipe,
    manifests: &[PlatformImage],
    layout: &Layout,
) -> Result<(Digest, &'static str, u64)> {
    if let [only] = manifests {
        return Ok((only.digest.clone(), image::MANIFEST_V1, only.size));
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(image::INDEX_V1.into()),
        manifests: manifests
            .iter()
            .map(|m| Descriptor {
                platform: Some(PlatformJson::from(&m.platform)),
                ..Descriptor::new(image::MANIFEST_V1, m.digest.clone(), m.size)
            })
            .collect(),
        annotations: recipe.annotations.clone(),
    };
    let bytes = canonical_json(&index);
    Ok((
        layout.write_blob(&bytes)?,
        image::INDEX_V1,
        bytes.len() as u64,
    ))
}

/// Recipe env overrides the base's by key; the base's order is kept, new keys follow
/// sorted.
fn merge_env(env: &mut Vec<String>, recipe: &BTreeMap<String, String>) {
    let mut rest = recipe.clone();
    for kv in env.iter_mut() {
        let key = kv
            .split_once('=')
            .map_or(kv.as_str(), |(k, _)| k)
            .to_string();
        if let Some(v) = rest.remove(&key) {
            *kv = format!("{key}={v}");
        }
    }
    env.extend(rest.into_iter().map(|(k, v)| format!("{k}={v}")));
}

#[cfg(test)]
mod tests {
    use super::merge_env;
    use std::collections::BTreeMap;

    #[test]
    fn recipe_env_overrides_base_env_and_appends_sorted() {
        let mut env = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let recipe = BTreeMap::from([
            ("Z".to_string(), "z".to_string()),
            ("PATH".to_string(), "/usr/bin".to_string()),
            ("B".to_string(), "b".to_string()),
        ]);
        merge_env(&mut env, &recipe);
        assert_eq!(env, vec!["PATH=/usr/bin", "A=1", "B=b", "Z=z"]);
    }
}
