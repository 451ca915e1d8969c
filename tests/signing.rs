//! Signatures and signed attestations in cosign's formats (docs/signing.md), against
//! the real test registry. cosign cannot be installed here, so what imgbuild stores is
//! read back with skopeo and checked with independent implementations: `openssl
//! pkeyutl` for Ed25519, Python's `cryptography` for ECDSA P-256, and PyNaCl +
//! `cryptography`'s scrypt to make a cosign-format encrypted key.

mod common;

use base64::Engine as _;
use common::registry::{Mode, Registry};
use common::{imgbuild, require_tool, stderr, Ctx};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const RECIPE: &str = "[image]\nsource-date-epoch = 1700000000\nplatforms = [\"linux/amd64\"]\n\
    [[layer]]\nname = \"app\"\n  [[layer.file]]\n  path = \"/hello\"\n  content = \"hello\\n\"\n";

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", cmd.get_program()))
}

fn openssl(dir: &Path, args: &[&str]) {
    require_tool("openssl");
    let o = run(Command::new("openssl").current_dir(dir).args(args));
    assert!(o.status.success(), "openssl {args:?}: {}", stderr(&o));
}

/// An Ed25519 key pair made by openssl: (private, public) PEM paths.
fn ed25519_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = format!("{name}.key");
    let public = format!("{name}.pub");
    openssl(dir, &["genpkey", "-algorithm", "ed25519", "-out", &key]);
    openssl(dir, &["pkey", "-in", &key, "-pubout", "-out", &public]);
    (dir.join(key), dir.join(public))
}

/// An ECDSA P-256 key pair made by openssl (PKCS#8).
fn p256_key(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = format!("{name}.key");
    let public = format!("{name}.pub");
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &key,
        ],
    );
    openssl(dir, &["pkey", "-in", &key, "-pubout", "-out", &public]);
    (dir.join(key), dir.join(public))
}

fn python() -> String {
    let python = std::env::var("IMGBUILD_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import cryptography, nacl"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{python} cannot import cryptography and nacl: run the tests with `bash scripts/test.sh`, \
         or set IMGBUILD_TEST_PYTHON to a python that has them (pip install cryptography==44.0.2 PyNaCl==1.5.0)"
    );
    python
}

/// Builds `RECIPE` (or `recipe`) and pushes it to `reference` with `extra` flags.
fn build_push(ctx: &Ctx, reference: &str, extra: &[&str]) -> Output {
    run(imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .arg(format!("--push={reference}"))
        .args(extra))
}

fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").expect("a sha256 digest")
}

/// The image at `reference` copied by skopeo into an OCI layout: its manifest, and a
/// reader of its blobs.
struct Fetched {
    dir: tempfile::TempDir,
    manifest: serde_json::Value,
}

impl Fetched {
    fn new(reference: &str) -> Fetched {
        require_tool("skopeo");
        let dir = tempfile::tempdir().expect("tmp");
        let o = run(Command::new("skopeo").args([
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:x", dir.path().join("l").display()),
        ]));
        assert!(
            o.status.success(),
            "skopeo copy {reference}: {}",
            stderr(&o)
        );
        let layout = common::Layout::new(&dir.path().join("l"));
        let index: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("l/index.json")).expect("index.json"),
        )
        .expect("index JSON");
        let digest = index["manifests"][0]["digest"].as_str().expect("digest");
        let manifest = layout.json(digest);
        Fetched { dir, manifest }
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        common::Layout::new(&self.dir.path().join("l")).blob(digest)
    }
}

/// Whether openssl says `signature` is `public`'s Ed25519 signature of `message`.
fn openssl_verifies(dir: &Path, public: &Path, message: &[u8], signature: &[u8]) -> bool {
    std::fs::write(dir.join("message"), message).unwrap();
    std::fs::write(dir.join("signature"), signature).unwrap();
    let o = run(Command::new("openssl").current_dir(dir).args([
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        &public.display().to_string(),
        "-rawin",
        "-in",
        "message",
        "-sigfile",
        "signature",
    ]));
    o.status.success()
}

/// The signature layers of `digest` in `repo` (on `reg`): (payload, signature).
fn signatures(reg: &Registry, repo: &str, digest: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let sig = Fetched::new(&reg.reference(&format!("{repo}:sha256-{}.sig", digest_hex(digest))));
    sig.manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            assert_eq!(
                l["mediaType"], "application/vnd.dev.cosign.simplesigning.v1+json",
                "{l}"
            );
            let b64 = l["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .expect("signature annotation");
            let signature = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            (sig.blob(l["digest"].as_str().expect("digest")), signature)
        })
        .collect()
}

#[test]
fn an_ed25519_signature_of_a_pushed_image_verifies_with_openssl() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(RECIPE);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = ed25519_key(keys.path(), "cosign");
    let o = build_push(
        &ctx,
        &reg.reference("signed/app:1"),
        &["--sign-key", &key.display().to_string()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let digest = stdout(&o);
    assert!(stderr(&o).contains(&format!("signed {digest} (signature, tag sha256-")));

    let found = signatures(&reg, "signed/app", &digest);
    assert_eq!(found.len(), 1);
    let (payload, signature) = &found[0];
    let v: serde_json::Value = serde_json::from_slice(payload).expect("payload JSON");
    assert_eq!(
        v["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(v["critical"]["type"], "cosign container image signature");
    assert_eq!(
        v["critical"]["identity"]["docker-reference"],
        reg.reference("signed/app").as_str()
    );
    assert!(openssl_verifies(keys.path(), &public, payload, signature));
    // And not for a payload with one byte changed.
    let mut tampered = payload.clone();
    tampered[10] ^= 1;
    assert!(!openssl_verifies(
        keys.path(),
        &public,
        &tampered,
        signature
    ));

    // imgbuild's own check agrees.
    let o = run(imgbuild().args([
        "verify-signature",
        &reg.reference("signed/app:1"),
        "--key",
        &public.display().to_string(),
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), digest);
}

#[test]
fn an_ecdsa_p256_signature_verifies_with_python_cryptography_for_the_index_and_each_platform() {
    let python = python();
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(&RECIPE.replace(
        "platforms = [\"linux/amd64\"]",
        "platforms = [\"linux/amd64\", \"linux/arm64\"]",
    ));
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = p256_key(keys.path(), "ec");
    let o = build_push(
        &ctx,
        &reg.reference("signed/multi:1"),
        &["--sign-key", &key.display().to_string(), "--json"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let index = report["digest"].as_str().unwrap().to_string();
    let mut digests = vec![index.clone()];
    for m in report["manifests"].as_array().unwrap() {
        digests.push(m["digest"].as_str().unwrap().to_string());
    }
    assert_eq!(digests.len(), 3, "{report}");
    assert_eq!(
        report["signed"].as_array().map(Vec::len),
        Some(3),
        "one signature per manifest and the index: {report}"
    );
    let script = "import sys\n\
        from cryptography.hazmat.primitives import hashes, serialization\n\
        from cryptography.hazmat.primitives.asymmetric import ec\n\
        key = serialization.load_pem_public_key(open(sys.argv[1], 'rb').read())\n\
        key.verify(open(sys.argv[3], 'rb').read(), open(sys.argv[2], 'rb').read(), ec.ECDSA(hashes.SHA256()))\n";
    for digest in &digests {
        let found = signatures(&reg, "signed/multi", digest);
        assert_eq!(found.len(), 1, "{digest}");
        let (payload, signature) = &found[0];
        let named: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(
            named["critical"]["image"]["docker-manifest-digest"],
            digest.as_str()
        );
        std::fs::write(keys.path().join("payload"), payload).unwrap();
        std::fs::write(keys.path().join("sig"), signature).unwrap();
        let o = run(Command::new(&python).current_dir(keys.path()).args([
            "-c",
            script,
            &public.display().to_string(),
            "payload",
            "sig",
        ]));
        assert!(o.status.success(), "{digest}: {}", stderr(&o));
    }
}

/// A cosign encrypted key file, made as cosign makes one (scrypt N=32768 r=8 p=1,
/// NaCl secretbox over the PKCS#8 key), by Python's own implementations.
fn cosign_key(dir: &Path, pkcs8_pem: &Path, password: &str) -> PathBuf {
    let script = "import sys, json, base64, os\n\
        from cryptography.hazmat.primitives import serialization\n\
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt\n\
        import nacl.secret\n\
        key = serialization.load_pem_private_key(open(sys.argv[1], 'rb').read(), None)\n\
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())\n\
        salt = os.urandom(32)\n\
        box = nacl.secret.SecretBox(Scrypt(salt=salt, length=32, n=32768, r=8, p=1).derive(sys.argv[2].encode()))\n\
        nonce = os.urandom(24)\n\
        sealed = box.encrypt(der, nonce).ciphertext\n\
        b = lambda x: base64.b64encode(x).decode()\n\
        doc = json.dumps({'kdf': {'name': 'scrypt', 'params': {'N': 32768, 'r': 8, 'p': 1}, 'salt': b(salt)}, 'cipher': {'name': 'nacl/secretbox', 'nonce': b(nonce)}, 'ciphertext': b(sealed)})\n\
        body = base64.encodebytes(doc.encode()).decode()\n\
        open(sys.argv[3], 'w').write('-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\\n' + body + '-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\\n')\n";
    let out = dir.join("cosign.key");
    let o = run(Command::new(python()).args([
        "-c",
        script,
        &pkcs8_pem.display().to_string(),
        password,
        &out.display().to_string(),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

#[test]
fn a_cosign_encrypted_key_signs_with_cosign_password_and_a_wrong_one_pushes_nothing() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(RECIPE);
    let keys = tempfile::tempdir().unwrap();
    let (plain, public) = p256_key(keys.path(), "ec");
    let password = "correct horse battery staple";
    let key = cosign_key(keys.path(), &plain, password);
    let key_arg = key.display().to_string();

    // A wrong passphrase, or none: exit 2 before anything is built or pushed, and the
    // passphrase is never shown.
    for env in [Some("Tr0ub4dor&3"), None] {
        let mut cmd = imgbuild();
        cmd.arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(ctx.path().join("refused"))
            .arg(format!("--push={}", reg.reference("enc/app:1")))
            .args(["--sign-key", &key_arg]);
        match env {
            Some(p) => cmd.env("COSIGN_PASSWORD", p),
            None => cmd.env_remove("COSIGN_PASSWORD"),
        };
        let o = run(&mut cmd);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("COSIGN_PASSWORD"), "{err}");
        assert!(
            !err.contains("Tr0ub4dor") && !err.contains(password),
            "{err}"
        );
        assert!(!ctx.path().join("refused").exists(), "nothing built: {err}");
        let o = run(imgbuild().args(["digest", &reg.reference("enc/app:1")]));
        assert_eq!(o.status.code(), Some(2), "nothing pushed: {}", stderr(&o));
    }

    let o = run(imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(ctx.path().join("out"))
        .arg(format!("--push={}", reg.reference("enc/app:1")))
        .args(["--sign-key", &key_arg])
        .env("COSIGN_PASSWORD", password));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(imgbuild().args([
        "verify-signature",
        &reg.reference("enc/app:1"),
        "--key",
        &public.display().to_string(),
    ]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// Copies the signature image of `from` (a digest) to the signature tag of `to`.
fn copy_signature(reg: &Registry, repo: &str, from: &str, to: &str) {
    let o = run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!(
            "docker://{}",
            reg.reference(&format!("{repo}:sha256-{}.sig", digest_hex(from)))
        ),
        &format!(
            "docker://{}",
            reg.reference(&format!("{repo}:sha256-{}.sig", digest_hex(to)))
        ),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
}

fn verify_signature(reference: &str, public: &Path) -> Output {
    run(imgbuild().args([
        "verify-signature",
        reference,
        "--key",
        &public.display().to_string(),
    ]))
}

#[test]
fn verify_signature_exit_codes_for_each_kind_of_signature() {
    let reg = Registry::start(Mode::Plain);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = ed25519_key(keys.path(), "right");
    let (_, other) = ed25519_key(keys.path(), "other");
    let key_arg = key.display().to_string();

    let signed_ctx = Ctx::new();
    signed_ctx.recipe_text(RECIPE);
    let o = build_push(
        &signed_ctx,
        &reg.reference("codes/app:signed"),
        &["--sign-key", &key_arg],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let signed = stdout(&o);

    // The right key: 0. Another key: 1, saying why.
    let o = verify_signature(&reg.reference("codes/app:signed"), &public);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = verify_signature(&reg.reference("codes/app:signed"), &other);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not a signature by this ed25519 key"), "{err}");
    assert!(stdout(&o).is_empty());

    // No signature at all: 1.
    let unsigned_ctx = Ctx::new();
    unsigned_ctx.recipe_text(&RECIPE.replace("hello\\n", "unsigned\\n"));
    let o = build_push(&unsigned_ctx, &reg.reference("codes/app:unsigned"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let unsigned = stdout(&o);
    let o = verify_signature(&reg.reference("codes/app:unsigned"), &public);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("no signature"), "{err}");

    // A signature of another digest, put where this image's would be: 1.
    copy_signature(&reg, "codes/app", &signed, &unsigned);
    let o = verify_signature(
        &format!("{}@{unsigned}", reg.reference("codes/app")),
        &public,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("it signs {signed}, not {unsigned}")),
        "{err}"
    );

    // A tampered payload (its signature kept): 1.
    tamper_payload(&reg, "codes/app", &signed);
    let o = verify_signature(&reg.reference("codes/app:signed"), &public);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("payload was altered"), "{err}");

    // A digest the repository does not hold, even with a signature stored for it: 2.
    let absent = format!("sha256:{}", "0".repeat(64));
    copy_signature(&reg, "codes/app", &signed, &absent);
    let o = verify_signature(&format!("{}@{absent}", reg.reference("codes/app")), &public);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // A file that is not a key: 2. A registry that does not answer: 3.
    std::fs::write(keys.path().join("junk.pub"), "not a key\n").unwrap();
    let o = verify_signature(
        &reg.reference("codes/app:signed"),
        &keys.path().join("junk.pub"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let o = verify_signature(&format!("127.0.0.1:{port}/codes/app:signed"), &public);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
}

/// Replaces the payload of `digest`'s signature with one whose image digest differs
/// in one character, keeping the signature annotation: a new OCI layout pushed by
/// skopeo under the same tag.
fn tamper_payload(reg: &Registry, repo: &str, digest: &str) {
    let tag = format!("{repo}:sha256-{}.sig", digest_hex(digest));
    let sig = Fetched::new(&reg.reference(&tag));
    let layer = &sig.manifest["layers"][0];
    let payload = String::from_utf8(sig.blob(layer["digest"].as_str().unwrap())).unwrap();
    let tampered = payload.replace(
        "cosign container image signature",
        "cosign container image signaturE",
    );
    assert_ne!(payload, tampered);
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        use sha2::Digest as _;
        let hex = format!("{:x}", sha2::Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let payload_digest = put(tampered.as_bytes());
    let config_digest = sig.manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    put(&sig.blob(&config_digest));
    let mut manifest = sig.manifest.clone();
    manifest["layers"][0]["digest"] = payload_digest.into();
    manifest["layers"][0]["size"] = tampered.len().into();
    let bytes = manifest.to_string().into_bytes();
    let manifest_digest = put(&bytes);
    std::fs::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "x"}}]});
    std::fs::write(dir.path().join("index.json"), index.to_string()).unwrap();
    let o = run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:x", dir.path().display()),
        &format!("docker://{}", reg.reference(&tag)),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn provenance_and_sbom_are_attached_as_dsse_envelopes_signed_with_the_key() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(RECIPE);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = ed25519_key(keys.path(), "att");
    let o = build_push(
        &ctx,
        &reg.reference("att/app:1"),
        &[
            "--sign-key",
            &key.display().to_string(),
            "--provenance",
            &ctx.path().join("prov.json").display().to_string(),
            "--sbom",
            &ctx.path().join("sbom.json").display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let digest = stdout(&o);
    let att = Fetched::new(&reg.reference(&format!("att/app:sha256-{}.att", digest_hex(&digest))));
    let layers = att.manifest["layers"].as_array().expect("layers");
    let mut predicates = Vec::new();
    for l in layers {
        assert_eq!(
            l["mediaType"], "application/vnd.dsse.envelope.v1+json",
            "{l}"
        );
        let envelope: serde_json::Value =
            serde_json::from_slice(&att.blob(l["digest"].as_str().unwrap())).expect("envelope");
        assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
        let b64 = base64::engine::general_purpose::STANDARD;
        let statement = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
        let signature = b64
            .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
            .unwrap();
        // DSSE v1's pre-authentication encoding, spelled out here independently.
        let mut pae = format!(
            "DSSEv1 28 application/vnd.in-toto+json {} ",
            statement.len()
        )
        .into_bytes();
        pae.extend_from_slice(&statement);
        assert!(
            openssl_verifies(keys.path(), &public, &pae, &signature),
            "{l}"
        );
        let s: serde_json::Value = serde_json::from_slice(&statement).unwrap();
        assert_eq!(s["_type"], "https://in-toto.io/Statement/v1");
        assert_eq!(s["subject"][0]["digest"]["sha256"], digest_hex(&digest));
        assert_eq!(l["annotations"]["predicateType"], s["predicateType"], "{l}");
        predicates.push(s["predicateType"].as_str().unwrap().to_string());
    }
    predicates.sort();
    assert_eq!(
        predicates,
        [
            "https://slsa.dev/provenance/v1",
            "https://spdx.dev/Document"
        ]
    );
}

#[test]
fn sign_signs_a_pushed_image_once_per_key_and_keeps_other_signatures() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(RECIPE);
    let o = build_push(&ctx, &reg.reference("later/app:1"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let digest = stdout(&o);
    let keys = tempfile::tempdir().unwrap();
    let (a, a_pub) = ed25519_key(keys.path(), "a");
    let (b, b_pub) = p256_key(keys.path(), "b");
    let sign = |key: &Path| {
        let o = run(imgbuild().args([
            "sign",
            &reg.reference("later/app:1"),
            "--key",
            &key.display().to_string(),
        ]));
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o), digest);
    };
    sign(&a);
    sign(&a);
    assert_eq!(
        signatures(&reg, "later/app", &digest).len(),
        1,
        "signing twice adds nothing"
    );
    sign(&b);
    assert_eq!(signatures(&reg, "later/app", &digest).len(), 2);
    for public in [&a_pub, &b_pub] {
        let o = verify_signature(&reg.reference("later/app:1"), public);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

#[test]
fn bad_keys_and_a_key_without_push_are_refused_before_anything_is_built_and_show_no_key() {
    let ctx = Ctx::new();
    ctx.recipe_text(RECIPE);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = ed25519_key(keys.path(), "k");
    let secret = std::fs::read_to_string(&key).unwrap();
    let body = secret.lines().nth(1).unwrap().to_string();
    let out = ctx.path().join("out");
    let build = |extra: &[&str]| {
        run(imgbuild()
            .arg("build")
            .arg(ctx.recipe())
            .arg("--out")
            .arg(&out)
            .args(extra))
    };
    let o = build(&["--sign-key", &key.display().to_string()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--sign-key signs what --push pushes"), "{err}");
    // A public key, a file that is no key, or an RSA key, where the private key goes.
    std::fs::write(keys.path().join("junk"), "not a key at all\n").unwrap();
    openssl(
        keys.path(),
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.key",
        ],
    );
    for (bad, says) in [
        (&public, "is a public key"),
        (&keys.path().join("junk"), "is not a PEM private key"),
        (
            &keys.path().join("rsa.key"),
            "the key's algorithm is not supported",
        ),
    ] {
        let o = build(&[
            "--push=127.0.0.1:1/x:1",
            "--sign-key",
            &bad.display().to_string(),
        ]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
    }
    // A private key where a public key goes: refused, its bytes never shown.
    let o = verify_signature("127.0.0.1:1/x:1", &key);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("is a private key"), "{err}");
    assert!(!err.contains(&body), "{err}");
    assert!(!out.exists(), "nothing built");
}

#[test]
fn verify_with_a_key_requires_the_signature_before_rebuilding() {
    let reg = Registry::start(Mode::Plain);
    let ctx = Ctx::new();
    ctx.recipe_text(RECIPE);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = ed25519_key(keys.path(), "builder");
    let (_, stranger) = ed25519_key(keys.path(), "stranger");
    let o = build_push(
        &ctx,
        &reg.reference("audit/app:1"),
        &["--sign-key", &key.display().to_string()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let verify = |public: &Path| {
        run(imgbuild()
            .arg("verify")
            .arg(ctx.recipe())
            .arg("--against")
            .arg(reg.reference("audit/app:1"))
            .arg("--key")
            .arg(public))
    };
    let o = verify(&public);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("is signed by the ed25519 key"), "{err}");
    assert!(err.contains("verify: rebuilt with format"), "{err}");
    let o = verify(&stranger);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is not signed by this key"), "{err}");
    assert!(
        !err.contains("rebuilt with format"),
        "nothing rebuilt: {err}"
    );
}

/// A checkout with a recipe that copies `src/app.txt`, no epoch of its own.
fn checkout() -> Ctx {
    let ctx = Ctx::new();
    ctx.write("src/app.txt", "version 1\n");
    ctx.recipe_text(
        "[image]\nplatforms = [\"linux/amd64\"]\n[[layer]]\nname = \"app\"\n  [[layer.copy]]\n  src = \"src/app.txt\"\n  dst = \"/app.txt\"\n",
    );
    ctx
}

fn verify_against(ctx: &Ctx, reference: &str, key: Option<&Path>) -> Output {
    let mut cmd = imgbuild();
    cmd.arg("verify")
        .arg(ctx.recipe())
        .arg("--against")
        .arg(reference);
    if let Some(k) = key {
        cmd.arg("--key").arg(k);
    }
    run(&mut cmd)
}

#[test]
fn verify_reads_the_provenance_names_a_changed_source_before_rebuilding_and_takes_its_epoch() {
    let reg = Registry::start(Mode::Plain);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = ed25519_key(keys.path(), "builder");
    let ctx = checkout();
    let reference = reg.reference("audit/inputs:1");
    // The epoch is given on the command line: an auditor's rebuild must take it from
    // the provenance, or the digest differs.
    let o = build_push(
        &ctx,
        &reference,
        &[
            "--sign-key",
            &key.display().to_string(),
            "--provenance",
            &ctx.path().join("out-prov.json").display().to_string(),
            "--source-date-epoch",
            "1234567890",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    for k in [Some(public.as_path()), None] {
        let o = verify_against(&ctx, &reference, k);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(0), "{k:?}: {err}");
        assert!(err.contains("holds every input"), "{err}");
        assert!(err.contains("source date epoch 1234567890"), "{err}");
    }

    // One source changed: exit 1 naming it, nothing rebuilt.
    ctx.write("src/app.txt", "version 2\n");
    for k in [Some(public.as_path()), None] {
        let o = verify_against(&ctx, &reference, k);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("source src/app.txt: changed"), "{err}");
        assert!(err.contains("the file here differs"), "{err}");
        assert!(
            !err.contains("rebuilt with format"),
            "nothing rebuilt: {err}"
        );
    }
}

#[test]
fn a_provenance_signed_by_another_key_fails_verify_without_rebuilding() {
    let reg = Registry::start(Mode::Plain);
    let keys = tempfile::tempdir().unwrap();
    let (builder, _) = ed25519_key(keys.path(), "builder");
    let (auditor_key, auditor_pub) = ed25519_key(keys.path(), "auditor");
    let ctx = checkout();
    let reference = reg.reference("audit/other:1");
    let o = build_push(
        &ctx,
        &reference,
        &[
            "--sign-key",
            &builder.display().to_string(),
            "--provenance",
            &ctx.path().join("out-prov.json").display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // The image itself also signed by the auditor's key: only the provenance is not.
    let o = run(imgbuild().args([
        "sign",
        &reference,
        "--key",
        &auditor_key.display().to_string(),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = verify_against(&ctx, &reference, Some(&auditor_pub));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("provenance attested for"), "{err}");
    assert!(err.contains("is not signed by this ed25519 key"), "{err}");
    assert!(
        !err.contains("rebuilt with format"),
        "nothing rebuilt: {err}"
    );
}

#[test]
fn verify_without_a_key_checks_the_inputs_an_unsigned_provenance_records() {
    let reg = Registry::start(Mode::Plain);
    let ctx = checkout();
    let reference = reg.reference("audit/unsigned:1");
    let o = build_push(
        &ctx,
        &reference,
        &[
            "--provenance",
            &ctx.path().join("out-prov.json").display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = verify_against(&ctx, &reference, None);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("(unsigned referrer)"), "{err}");
    ctx.write("src/app.txt", "version 2\n");
    let o = verify_against(&ctx, &reference, None);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("unsigned referrer") && err.contains("source src/app.txt: changed"),
        "{err}"
    );
    assert!(
        !err.contains("rebuilt with format"),
        "nothing rebuilt: {err}"
    );
}

#[test]
fn a_signed_provenance_of_another_image_replayed_under_this_ones_tag_is_refused() {
    let reg = Registry::start(Mode::Plain);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = ed25519_key(keys.path(), "builder");
    let key_arg = key.display().to_string();
    let old = checkout();
    let o = build_push(
        &old,
        &reg.reference("audit/replay:old"),
        &[
            "--sign-key",
            &key_arg,
            "--provenance",
            &old.path().join("p.json").display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let old_digest = stdout(&o);
    let new = checkout();
    new.write("src/app.txt", "version 2\n");
    let o = build_push(
        &new,
        &reg.reference("audit/replay:new"),
        &[
            "--sign-key",
            &key_arg,
            "--provenance",
            &new.path().join("p.json").display().to_string(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let new_digest = stdout(&o);
    // The old image's attestation, signed by the same key, put where the new one's is.
    let o = run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!(
            "docker://{}",
            reg.reference(&format!(
                "audit/replay:sha256-{}.att",
                digest_hex(&old_digest)
            ))
        ),
        &format!(
            "docker://{}",
            reg.reference(&format!(
                "audit/replay:sha256-{}.att",
                digest_hex(&new_digest)
            ))
        ),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = verify_against(&new, &reg.reference("audit/replay:new"), Some(&public));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is about another image"), "{err}");
    assert!(
        !err.contains("rebuilt with format"),
        "nothing rebuilt: {err}"
    );
}

#[test]
fn key_variables_set_for_a_whole_job_do_not_break_commands_they_do_not_apply_to() {
    let ctx = Ctx::new();
    ctx.recipe_text(RECIPE);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = ed25519_key(keys.path(), "job");
    // A build that pushes nothing: IMGBUILD_SIGN_KEY from the environment is not for it.
    let out = ctx.path().join("out");
    let o = run(imgbuild()
        .arg("build")
        .arg(ctx.recipe())
        .arg("--out")
        .arg(&out)
        .env("IMGBUILD_SIGN_KEY", &key));
    assert!(o.status.success(), "{}", stderr(&o));
    // A verification against a layout: IMGBUILD_VERIFY_KEY is for registry images.
    let o = run(imgbuild()
        .arg("verify")
        .arg(ctx.recipe())
        .arg("--against")
        .arg(format!("oci:{}", out.display()))
        .env("IMGBUILD_VERIFY_KEY", &public));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // On the command line, they apply.
    let o = run(imgbuild()
        .arg("verify")
        .arg(ctx.recipe())
        .arg("--against")
        .arg(format!("oci:{}", out.display()))
        .arg("--key")
        .arg(&public));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
