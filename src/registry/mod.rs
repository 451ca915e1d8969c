//! Talking to OCI registries (SPEC §4): credentials, the client, push and pull.

mod auth;
pub mod client;
pub mod credentials;
pub mod pull;
pub mod push;
pub mod referrers;
pub mod retry;
pub mod transport;
