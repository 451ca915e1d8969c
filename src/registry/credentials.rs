//! TEMPORARY stub until the credentials branch lands.
#![allow(dead_code)]
use crate::error::Result;
use std::collections::HashMap;

pub struct Secret(String);
impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
pub enum Credential {
    Basic { username: String, password: Secret },
    IdentityToken(Secret),
}
pub struct Found {
    pub credential: Credential,
    pub source: String,
}
pub struct Environment(HashMap<String, String>);
impl Environment {
    pub fn from_process() -> Self {
        Environment(std::env::vars().collect())
    }
}
pub fn find(_registry: &str, _repository: &str, env: &Environment) -> Result<Option<Found>> {
    match (
        env.0.get("IMGBUILD_REGISTRY_USER"),
        env.0.get("IMGBUILD_REGISTRY_PASSWORD"),
    ) {
        (Some(u), Some(p)) => Ok(Some(Found {
            credential: Credential::Basic {
                username: u.clone(),
                password: Secret::new(p.clone()),
            },
            source: "IMGBUILD_REGISTRY_USER/_PASSWORD".into(),
        })),
        _ => Ok(None),
    }
}
