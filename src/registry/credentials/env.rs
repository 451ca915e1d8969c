//! Source 1: the `IMGBUILD_REGISTRY_USER` / `IMGBUILD_REGISTRY_PASSWORD` variables.

use std::ffi::OsStr;

use crate::error::{Error, Result};

use super::*;

/// Source 1: `IMGBUILD_REGISTRY_USER` + `IMGBUILD_REGISTRY_PASSWORD`.
pub(super) fn from_variables(env: &Environment) -> Result<Option<Found>> {
    let text = |name: &str, value: &OsStr| -> Result<String> {
        value
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| Error::input(format!("{name} is not valid UTF-8")))
    };
    let hint = format!("set both {USER_VAR} and {PASSWORD_VAR} to log in with them, or neither to use the credential files");
    match (env.get(USER_VAR), env.get(PASSWORD_VAR)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(Error::input(format!(
            "{USER_VAR} is set but {PASSWORD_VAR} is not"
        ))
        .with_hint(hint)),
        (None, Some(_)) => Err(Error::input(format!(
            "{PASSWORD_VAR} is set but {USER_VAR} is not"
        ))
        .with_hint(hint)),
        (Some(user), Some(password)) => Ok(Some(Found {
            credential: Credential::Basic {
                username: text(USER_VAR, user)?,
                password: Secret(text(PASSWORD_VAR, password)?),
            },
            source: format!("{USER_VAR}/_PASSWORD"),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ExitCode;
    use crate::registry::credentials::fixture::*;

    #[test]
    fn variables_apply_to_every_registry_and_come_first() {
        let fx = Fixture::new();
        fx.docker_config(&auths("ghcr.io", "file-user", "file-pass"));
        let env = fx.env(&[(USER_VAR, "env-user"), (PASSWORD_VAR, "env:pass")]);
        for registry in ["ghcr.io", "127.0.0.1:5000", "docker.io"] {
            let found = get(registry, "acme/app", &env);
            assert_eq!(basic(&found), ("env-user", "env:pass"));
            assert_eq!(found.source, "IMGBUILD_REGISTRY_USER/_PASSWORD");
        }
    }

    #[test]
    fn only_one_variable_is_an_input_error_naming_the_missing_one() {
        let fx = Fixture::new();
        let e = fails("ghcr.io", &fx.env(&[(USER_VAR, "u")]));
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        assert_eq!(
            e.message(),
            "IMGBUILD_REGISTRY_USER is set but IMGBUILD_REGISTRY_PASSWORD is not"
        );
        let e = fails("ghcr.io", &fx.env(&[(PASSWORD_VAR, "p4ss")]));
        assert_eq!(e.exit_code(), ExitCode::BadInput);
        assert_eq!(
            e.message(),
            "IMGBUILD_REGISTRY_PASSWORD is set but IMGBUILD_REGISTRY_USER is not"
        );
        assert!(!e.to_string().contains("p4ss"));
        // Empty counts as unset.
        let e = fails("ghcr.io", &fx.env(&[(USER_VAR, "u"), (PASSWORD_VAR, "")]));
        assert!(e.message().contains("PASSWORD is not"), "{e}");
    }
}
