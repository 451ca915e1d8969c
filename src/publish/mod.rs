//! Publishing: an image of a layout goes to a registry repository, with its tags and
//! the documents attached to it.
//!
//! This is the library's one entry point for `build --push` and `imgbuild push`:
//! [`Publisher::connect`] reaches the registry and checks the credentials *before*
//! anything expensive happens (a CI step should fail in seconds, not after the
//! build); [`Publisher::publish`] then pushes the blobs and manifests (the algorithm
//! of `push.rs`: HEAD, mount, streaming upload, children before the index,
//! tags last) and attaches the documents as OCI referrers (`registry::referrers`).

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::Descriptor;
use crate::layout::Layout;
use crate::reference::RegistryRef;
use crate::registry::client::{self, RegistryClient};
use crate::registry::referrers::{self, Artifact, Attached};
use crate::sign::{self, Signed, SigningKey, Statement};

mod push;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

pub use push::PushReport;

/// A registry repository to publish to, reached and authorized for pushing.
pub struct Publisher {
    runtime: tokio::runtime::Runtime,
    client: RegistryClient,
    repository: String,
    /// Blobs known to be in another repository of the target's registry (a shared
    /// layer cache's): digest → repository, mounted from there.
    mount_sources: Mutex<BTreeMap<Digest, String>>,
    /// Blobs mounted into the target while the image was built (a build that keeps
    /// no layout, `MountTarget`): the layout need not hold them.
    premounted: Mutex<BTreeSet<Digest>>,
}

/// What publishing did.
#[derive(Debug, Clone)]
pub struct Published {
    pub push: PushReport,
    /// The documents attached (empty when none were given).
    pub attached: Vec<Attached>,
    /// The signatures and signed attestations stored (empty without a key).
    pub signed: Vec<Signed>,
}

impl Publisher {
    /// Connects to `target`'s registry and obtains push access to its repository.
    /// Refused credentials, TLS problems and unreachable registries fail here.
    pub fn connect(target: &RegistryRef, opts: &client::Options) -> Result<Publisher> {
        let runtime = client::runtime()?;
        let client = runtime.block_on(async {
            let c = RegistryClient::connect(&target.registry, &target.repository, opts).await?;
            c.authorize(&target.repository, true).await?;
            Ok::<_, Error>(c)
        })?;
        Ok(Publisher {
            runtime,
            client,
            repository: target.repository.clone(),
            mount_sources: Mutex::new(BTreeMap::new()),
            premounted: Mutex::new(BTreeSet::new()),
        })
    }

    /// Tells the push where blobs already are: `registry/repository` per digest
    /// (the layers a build took from a registry cache). Those on the target's registry
    /// are mounted from there instead of uploaded.
    pub fn mount_from(&self, known: &BTreeMap<Digest, (String, String)>) {
        let Ok(mut sources) = self.mount_sources.lock() else {
            return;
        };
        for (digest, (registry, repository)) in known {
            if registry == self.client.registry() && *repository != self.repository {
                sources.insert(digest.clone(), repository.clone());
            }
        }
    }

    /// `registry/repository`, as messages name it.
    pub fn target(&self) -> String {
        format!("{}/{}", self.client.registry(), self.repository)
    }

    /// Pushes the image `root` of `layout` with `tags` (by digest alone when there are
    /// none), then attaches `documents` to it. A failure before the tags are written
    /// moves no tag.
    pub fn publish(
        &self,
        layout: &Layout,
        root: &Descriptor,
        tags: &[String],
        documents: &[Artifact<'_>],
    ) -> Result<Published> {
        let sources = self
            .mount_sources
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let premounted = self
            .premounted
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        self.runtime.block_on(async {
            let push = push::push(
                &self.client,
                layout,
                root,
                &self.repository,
                tags,
                push::Elsewhere {
                    mount_sources: &sources,
                    premounted: &premounted,
                },
            )
            .await?;
            let attached = if documents.is_empty() {
                Vec::new()
            } else {
                referrers::attach(&self.client, layout, &self.repository, root, documents).await?
            };
            Ok(Published {
                push,
                attached,
                signed: Vec::new(),
            })
        })
    }

    /// The image `tag_or_digest` names in this repository: its root's descriptor.
    pub fn resolve(&self, tag_or_digest: &str) -> Result<Descriptor> {
        self.runtime.block_on(async {
            let (bytes, digest) = self
                .client
                .get_manifest(&self.repository, tag_or_digest)
                .await?;
            let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                Error::input(format!(
                    "{}@{digest}: not a valid manifest or index: {e}",
                    self.target()
                ))
            })?;
            let media_type = crate::image::media_type_of(&value)
                .unwrap_or_else(|| crate::image::MANIFEST_V1.to_string());
            Ok(Descriptor::new(&media_type, digest, bytes.len() as u64))
        })
    }

    /// Signs the image `root` (already in the repository) with `key` — the root and,
    /// for an index, each of its manifests — and attaches `statements` to the root as
    /// attestations signed with the same key, in cosign's formats.
    pub fn sign(
        &self,
        root: &Descriptor,
        key: &SigningKey,
        statements: &[Statement],
    ) -> Result<Vec<Signed>> {
        self.runtime.block_on(async {
            let subjects = sign::subjects(&self.client, &self.repository, root).await?;
            let signed =
                sign::sign_image(&self.client, &self.repository, &subjects, key, statements)
                    .await?;
            for s in &signed {
                self.client.events().emit(crate::events::Event::Signed {
                    kind: s.kind.clone(),
                    digest: s.digest.clone(),
                    tag: s.tag.clone(),
                });
            }
            Ok(signed)
        })
    }
}

/// A build that keeps no layout mounts the layers it finds in a registry cache of the
/// target's registry straight into the target repository, and reads the size the
/// target then has (HEAD).
impl crate::cache::shared::MountTarget for Publisher {
    fn registry(&self) -> &str {
        self.client.registry()
    }

    fn mount(&self, repository: &str, digest: &Digest) -> Option<u64> {
        let size = self
            .runtime
            .block_on(async {
                // Mounted first (a registry mounts a blob the target already has too),
                // then its size read back; a declined mount may still find it there.
                let mounted = repository != self.repository
                    && self
                        .client
                        .mount_blob(&self.repository, repository, digest)
                        .await
                        .ok()?;
                if mounted {
                    self.client
                        .events()
                        .emit(crate::events::Event::BlobMounted {
                            digest: digest.clone(),
                            from: repository.to_string(),
                        });
                }
                self.client.blob_size(&self.repository, digest).await.ok()?
            })
            // A registry that names no length leaves the size unchecked: not taken.
            .filter(|size| *size != u64::MAX)?;
        if let Ok(mut m) = self.premounted.lock() {
            m.insert(digest.clone());
        }
        Some(size)
    }
}
