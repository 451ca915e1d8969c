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

mod push;

use std::collections::BTreeMap;

pub use push::PushReport;

/// A registry repository to publish to, reached and authorized for pushing.
pub struct Publisher {
    runtime: tokio::runtime::Runtime,
    client: RegistryClient,
    repository: String,
    /// Blobs known to be in another repository of the target's registry (a shared
    /// layer cache's): digest → repository, mounted from there.
    mount_sources: BTreeMap<Digest, String>,
}

/// What publishing did.
#[derive(Debug, Clone)]
pub struct Published {
    pub push: PushReport,
    /// The documents attached (empty when none were given).
    pub attached: Vec<Attached>,
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
            mount_sources: BTreeMap::new(),
        })
    }

    /// Tells the push where blobs already are: `registry/repository` per digest
    /// (the layers a build took from a registry cache). Those on the target's registry
    /// are mounted from there instead of uploaded.
    pub fn mount_from(&mut self, known: &BTreeMap<Digest, (String, String)>) {
        for (digest, (registry, repository)) in known {
            if registry == self.client.registry() && *repository != self.repository {
                self.mount_sources
                    .insert(digest.clone(), repository.clone());
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
        self.runtime.block_on(async {
            let push = push::push(
                &self.client,
                layout,
                root,
                &self.repository,
                tags,
                &self.mount_sources,
            )
            .await?;
            let attached = if documents.is_empty() {
                Vec::new()
            } else {
                referrers::attach(&self.client, layout, &self.repository, root, documents).await?
            };
            Ok(Published { push, attached })
        })
    }
}
