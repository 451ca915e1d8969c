//! The Debian packages of a build: what recipe.lock pins for the layers' `packages`
//! on the platforms built, as downloads `crate::fetch` verifies by sha256. A build
//! never resolves packages itself; a layer whose packages are not pinned is bad input
//! (found when it is planned, `plan::deb`).

use crate::apt::LockedPackage;
use crate::fetch::UrlPin;
use crate::lock::Lock;
use crate::platform::Platform;
use crate::recipe::Recipe;

/// The lock's package pins for the recipe's layers and `platforms`, and one download
/// per distinct file.
pub(super) fn pins(
    recipe: &Recipe,
    lock: Option<&Lock>,
    platforms: &[Platform],
) -> (Vec<LockedPackage>, Vec<UrlPin>) {
    let mut packages = Vec::new();
    let mut downloads: Vec<UrlPin> = Vec::new();
    let Some(lock) = lock else {
        return (packages, downloads);
    };
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
    (packages, downloads)
}
