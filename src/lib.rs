//! imgbuild compiles a declarative recipe into a reproducible OCI image.
//!
//! The pipeline, one module per arrow (see ARCHITECTURE.md):
//! `recipe` (parse) → `plan` (resolve) → `layer` (write, with `compress`) →
//! `image` (assemble) → `layout` (store). `build` drives it end to end.

pub mod apt;
pub mod archive;
pub mod atomic;
pub mod base;
pub mod beneath;
pub mod build;
pub mod cache;
pub mod compress;
pub mod copy;
pub mod diff;
pub mod digest;
pub mod epoch;
pub mod error;
pub mod events;
pub mod fetch;
pub mod format;
pub mod image;
pub mod inspect;
pub mod layer;
pub mod layout;
pub mod lock;
pub mod plan;
pub mod platform;
pub mod prehash;
pub mod provenance;
pub mod publish;
pub mod recipe;
pub mod reference;
pub mod registry;
pub mod sbom;
pub mod sign;
pub mod source;
pub mod stamp;
mod suggest;
pub mod tar_read;
pub mod verify;

pub use error::{Error, ExitCode, Result};

/// This imgbuild's version (`imgbuild version`; the provenance's builder version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
