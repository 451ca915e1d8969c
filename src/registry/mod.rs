//! Talking to OCI registries (docs/registries.md): credentials, authentication, the
//! retry policy, the client, push and pull.

mod auth;
pub mod client;
pub mod credentials;
pub mod referrers;
pub mod retry;
pub mod transport;
