//! The library's publishing step on its own: an image written by hand into a layout
//! (no recipe, no build) is published to a real registry (Debian's `docker-registry`
//! on 127.0.0.1) through `imgbuild::publish::Publisher`, and what it reports as
//! events is what the registry then holds.

mod common;

use common::registry::{Mode, Registry};
use imgbuild::events::{Event, Events, Recorder};
use imgbuild::image::{canonical_json, Descriptor, MANIFEST_V1};
use imgbuild::layout::Layout;
use imgbuild::publish::Publisher;
use imgbuild::reference::{Reference, RegistryRef};
use imgbuild::registry::client::Options;
use imgbuild::registry::referrers::Artifact;
use std::sync::Arc;

/// A one-layer image written blob by blob: an uncompressed layer, a config and a
/// manifest. Returns the manifest's descriptor.
fn hand_made_image(layout: &Layout) -> Descriptor {
    let layer = common::make_tar(&[("hello.txt", Some(b"hello\n"), None)]);
    let layer_digest = layout.write_blob(&layer).expect("layer");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
    });
    let config_bytes = serde_json::to_vec(&config).expect("config");
    let config_digest = layout.write_blob(&config_bytes).expect("config blob");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_V1,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest.to_string(),
            "size": layer.len(),
        }],
    });
    let bytes = canonical_json(&manifest);
    let digest = layout.write_blob(&bytes).expect("manifest blob");
    Descriptor::new(MANIFEST_V1, digest, bytes.len() as u64)
}

fn target(registry: &Registry, repo_and_tag: &str) -> RegistryRef {
    match Reference::parse(&registry.reference(repo_and_tag)) {
        Ok(Reference::Registry(r)) => r,
        other => panic!("not a registry reference: {other:?}"),
    }
}

#[test]
fn a_hand_made_layout_is_published_with_its_tag_and_a_document_and_reported_as_events() {
    let registry = Registry::start(Mode::Plain);
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = Layout::create(&dir.path().join("oci")).expect("layout");
    let root = hand_made_image(&layout);
    let recorder = Arc::new(Recorder::default());
    let opts = Options {
        events: Events::new(recorder.clone()),
        ..Options::default()
    };

    let publisher = Publisher::connect(&target(&registry, "hand/made:v1"), &opts).expect("connect");
    let document = Artifact {
        artifact_type: "application/vnd.example.note+json",
        title: "note.json",
        bytes: b"{\"note\":\"made by hand\"}",
    };
    let published = publisher
        .publish(&layout, &root, &["v1".to_string()], &[document])
        .expect("publish");

    assert_eq!(published.push.digest, root.digest.to_string());
    assert_eq!(published.push.blobs, 2, "one layer and one config");
    assert_eq!(published.push.uploaded, 2);
    assert_eq!(published.attached.len(), 1);
    let events = recorder.events();
    let uploaded = events
        .iter()
        .filter(|e| matches!(e, Event::BlobUploaded { .. }))
        .count();
    assert_eq!(uploaded, 2, "one upload event per blob: {events:?}");
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Pushed { target, .. } if target.ends_with("hand/made (tags v1)"))
        ),
        "a Pushed event names the repository and tag: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Attached { subject, .. } if *subject == root.digest)),
        "an Attached event names the image as subject: {events:?}"
    );

    // The registry serves the tag as exactly the manifest bytes of the layout
    // (skopeo, an independent client, reads it).
    common::require_tool("skopeo");
    let mut skopeo = std::process::Command::new("skopeo");
    skopeo.arg("inspect").arg("--raw");
    skopeo.args(registry.skopeo_flags(""));
    let out = skopeo
        .arg(format!("docker://{}", registry.reference("hand/made:v1")))
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo: {}", common::stderr(&out));
    assert_eq!(
        out.stdout,
        layout.read_blob(&root.digest).expect("manifest")
    );
}

#[test]
fn publishing_again_uploads_nothing() {
    let registry = Registry::start(Mode::Plain);
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = Layout::create(&dir.path().join("oci")).expect("layout");
    let root = hand_made_image(&layout);
    let publisher =
        Publisher::connect(&target(&registry, "hand/again"), &Options::default()).expect("connect");
    publisher
        .publish(&layout, &root, &["latest".to_string()], &[])
        .expect("first publish");
    let again = publisher
        .publish(&layout, &root, &["latest".to_string()], &[])
        .expect("second publish");
    assert_eq!(again.push.uploaded, 0);
    assert_eq!(again.push.skipped, 2);
    assert!(again.attached.is_empty());
}

/// A registry's refusal reaches a library caller as data, not only as text: the
/// registry it came from and the HTTP status, for a missing tag (404) and for a
/// registry that wants credentials it was not given (401).
#[test]
fn a_registry_error_carries_its_registry_and_status() {
    use imgbuild::source::ImageSource;
    let plain = Registry::start(Mode::Plain);
    let source = imgbuild::source::RegistrySource::open(
        &target(&plain, "hand/missing:nope"),
        &Options::default(),
    )
    .expect("an empty repository can be opened");
    let err = source.root().expect_err("no such tag");
    assert_eq!(err.status(), Some(404), "{}", err.message());
    assert_eq!(
        err.registry(),
        Some(plain.host().as_str()),
        "{}",
        err.message()
    );
    // A registry that definitely has no such image: bad input, as in a layout.
    assert_eq!(err.exit_code(), imgbuild::ExitCode::BadInput);

    let guarded = Registry::start(Mode::htpasswd("alice", "s3cret"));
    let err = Publisher::connect(&target(&guarded, "hand/guarded:v1"), &Options::default())
        .err()
        .expect("no credentials were given");
    assert_eq!(err.status(), Some(401), "{}", err.message());
    assert_eq!(
        err.registry(),
        Some(guarded.host().as_str()),
        "{}",
        err.message()
    );
}
