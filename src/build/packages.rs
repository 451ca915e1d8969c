//! The Debian packages of a build: what recipe.lock pins for the layers' `packages`
//! on the platforms built, as downloads `crate::fetch` verifies by sha256. A build
//! never resolves packages itself; a layer whose packages are not pinned is bad input
//! (found when it is planned, `plan::deb`).

use crate::apt::LockedPackage;
use crate::error::Result;
use crate::fetch::UrlPin;
use crate::lock::Lock;
use crate::platform::Platform;
use crate::recipe::Recipe;
use std::path::Path;

/// The lock's package pins for the recipe's layers and `platforms`, and one download
/// per distinct file. A lock that was written for other packages, or from other apt
/// sources, is refused (exit 2): the build never resolves packages itself.
pub(super) fn pins(
    recipe: &Recipe,
    lock: Option<&Lock>,
    platforms: &[Platform],
    (recipe_path, locked): (&Path, bool),
) -> Result<(Vec<LockedPackage>, Vec<UrlPin>)> {
    let mut packages = Vec::new();
    let mut downloads: Vec<UrlPin> = Vec::new();
    let Some(lock) = lock else {
        return Ok((packages, downloads));
    };
    let asked = crate::apt::requested(recipe);
    let wanted = crate::apt::sources(recipe);
    if !lock.package.is_empty() && lock.apt_source != wanted {
        return Err(crate::lock::refused(
            recipe_path,
            locked,
            format!(
                "was written from the apt sources {}, the recipe has {}",
                crate::apt::show_sources(&lock.apt_source),
                crate::apt::show_sources(&wanted)
            ),
        ));
    }
    for (layer, names) in &asked {
        let pinned = lock.apt_layers.get(layer);
        if pinned.is_some_and(|p| p != names) {
            return Err(crate::lock::refused(
                recipe_path,
                locked,
                format!(
                    "was written for packages {:?} in layer {layer:?}, the recipe asks for {:?}",
                    pinned.map(|p| p.join(", ")).unwrap_or_default(),
                    names.join(", ")
                ),
            ));
        }
    }
    let sources: Vec<&String> = recipe
        .apt_sources
        .iter()
        .map(|s| s.get_ref().url.get_ref())
        .collect();
    if let Some(p) = lock
        .package
        .iter()
        .find(|p| asked.contains_key(&p.layer) && !sources.contains(&&p.source))
    {
        return Err(crate::lock::refused(
            recipe_path,
            locked,
            format!(
                "pins package {} from {}, which is not an [[apt-source]] of the recipe",
                p.name, p.source
            ),
        ));
    }
    for layer in &recipe.layers {
        let l = layer.get_ref();
        let (Some(first), Some(last)) = (l.packages.first(), l.packages.last()) else {
            continue;
        };
        let span = first.span().start..last.span().end;
        for platform in platforms {
            let text = platform.to_string();
            for p in lock
                .package
                .iter()
                .filter(|p| p.layer == *l.name.get_ref() && p.platform == text)
            {
                packages.push(p.clone());
                if !downloads.iter().any(|d| d.sha256 == p.sha256) {
                    downloads.push(UrlPin {
                        url: p.url(),
                        sha256: p.sha256.clone(),
                        platform: platform.clone(),
                        url_span: span.clone(),
                        sha256_span: span.clone(),
                        package: Some(format!("{} {}", p.name, p.version)),
                    });
                }
            }
        }
    }
    Ok((packages, downloads))
}
