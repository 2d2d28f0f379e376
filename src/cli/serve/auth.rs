//! Password authentication with SCRAM-SHA-256 (RFC 5802/7677, Postgres's default since 14): the
//! password never crosses the wire, even without TLS. One password for every user name; it
//! comes from `DVSQL_SERVE_PASSWORD` or the first line of `--password-file`, never from the
//! command line. Only its salted hash is kept after start-up.

use std::fmt;
use std::path::Path;

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::sasl::scram::gen_salted_password;
use datafusion_postgres::pgwire::api::auth::{AuthSource, LoginInfo, Password};
use datafusion_postgres::pgwire::error::PgWireResult;

/// The environment variable holding the password.
pub const PASSWORD_VARIABLE: &str = "DVSQL_SERVE_PASSWORD";

/// SCRAM iterations (the RFC's minimum, and Postgres's default).
pub const ITERATIONS: usize = 4096;

/// The password, from the file when one is given, else from the environment; `None` when
/// neither is set. An empty password is an error rather than no password.
pub fn password(file: Option<&Path>) -> Result<Option<String>, String> {
    let password = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
            Some(text.lines().next().unwrap_or_default().to_string())
        }
        None => std::env::var(PASSWORD_VARIABLE).ok(),
    };
    match password {
        Some(p) if p.is_empty() => Err(match file {
            Some(path) => format!("the password file {} is empty", path.display()),
            None => format!("{PASSWORD_VARIABLE} is empty"),
        }),
        other => Ok(other),
    }
}

/// The salted password SCRAM checks proofs against.
pub struct SaltedPassword {
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl SaltedPassword {
    pub fn new(password: &str) -> Self {
        let salt: [u8; 16] = rand::random();
        let salted = gen_salted_password(password, &salt, ITERATIONS);
        Self {
            salt: salt.to_vec(),
            salted,
        }
    }
}

impl fmt::Debug for SaltedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaltedPassword(…)")
    }
}

#[async_trait]
impl AuthSource for SaltedPassword {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        Ok(Password::new(Some(self.salt.clone()), self.salted.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_salted_password_never_prints_itself() {
        let salted = SaltedPassword::new("hunter2");
        assert_eq!(format!("{salted:?}"), "SaltedPassword(…)");
        assert_ne!(salted.salted, b"hunter2");
    }

    #[test]
    fn the_password_file_gives_its_first_line_and_refuses_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\nignored\n").unwrap();
        assert_eq!(password(Some(&path)).unwrap().as_deref(), Some("s3cret"));
        std::fs::write(&path, "\n").unwrap();
        assert!(password(Some(&path)).is_err());
    }
}
