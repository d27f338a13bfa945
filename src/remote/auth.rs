//! Registry credentials, found where users already keep them, and the registry's challenge.
//!
//! The credentials for a host come from, in order: `CANDIDATE_REGISTRY_USERNAME` and
//! `CANDIDATE_REGISTRY_PASSWORD` (CI secrets), then the containers tools' `auth.json`
//! (`REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `$XDG_CONFIG_HOME/containers/auth.json` or `~/.config/containers/auth.json`), then
//! docker's `config.json` (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`). Both
//! files are `{"auths": {"HOST[:PORT]": {"auth": base64("USER:PASSWORD")}}}`. Credential
//! helpers (`credHelpers`, `credsStore`) are not run. Credentials are never printed: the
//! [`Credentials`] type has no `Display` and its `Debug` hides the password.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::RemoteError;

/// A user name and password (or identity token) for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<hidden>").finish()
    }
}

impl Credentials {
    /// The `Authorization: Basic …` value.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// Where credentials are looked up: the process environment, read once, so that tests can
/// give their own.
pub struct Sources {
    pub env: BTreeMap<String, String>,
}

impl Sources {
    pub fn from_env() -> Self {
        Sources { env: std::env::vars().collect() }
    }

    fn var(&self, name: &str) -> Option<&str> {
        self.env.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The auth files to read, in order; those that do not exist are skipped.
    fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(f) = self.var("REGISTRY_AUTH_FILE") {
            files.push(PathBuf::from(f));
        }
        if let Some(d) = self.var("XDG_RUNTIME_DIR") {
            files.push(Path::new(d).join("containers/auth.json"));
        }
        let home = self.var("HOME").map(PathBuf::from);
        match (self.var("XDG_CONFIG_HOME"), &home) {
            (Some(d), _) => files.push(Path::new(d).join("containers/auth.json")),
            (None, Some(h)) => files.push(h.join(".config/containers/auth.json")),
            (None, None) => {}
        }
        match (self.var("DOCKER_CONFIG"), &home) {
            (Some(d), _) => files.push(Path::new(d).join("config.json")),
            (None, Some(h)) => files.push(h.join(".docker/config.json")),
            (None, None) => {}
        }
        files
    }

    /// The credentials for `host`, if any source has them.
    pub fn lookup(&self, host: &str) -> Result<Option<Credentials>, RemoteError> {
        if let (Some(username), Some(password)) =
            (self.var("CANDIDATE_REGISTRY_USERNAME"), self.var("CANDIDATE_REGISTRY_PASSWORD"))
        {
            return Ok(Some(Credentials { username: username.to_owned(), password: password.to_owned() }));
        }
        for file in self.files() {
            let bytes = match fs_err::read(&file) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(RemoteError::AuthFile { path: file.display().to_string(), source }),
            };
            if let Some(found) = from_auth_file(&file, &bytes, host)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

#[derive(serde::Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
}

/// The entry for `host` in an `auth.json`/`config.json`; keys may carry a scheme or a path
/// (`https://HOST/v1/`), as docker writes them.
fn from_auth_file(path: &Path, bytes: &[u8], host: &str) -> Result<Option<Credentials>, RemoteError> {
    let invalid = |detail: String| RemoteError::AuthFormat { path: path.display().to_string(), detail };
    let file: AuthFile = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let entry = file.auths.iter().find(|(key, _)| {
        let key = key.trim_start_matches("https://").trim_start_matches("http://");
        key.split('/').next() == Some(host)
    });
    let Some((key, AuthEntry { auth: Some(auth) })) = entry else { return Ok(None) };
    // The key is named, never the value.
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| invalid(format!("`auths.{key}.auth` is not base64")))?;
    let text = String::from_utf8(decoded).map_err(|_| invalid(format!("`auths.{key}.auth` is not UTF-8")))?;
    let (username, password) =
        text.split_once(':').ok_or_else(|| invalid(format!("`auths.{key}.auth` is not `USER:PASSWORD`")))?;
    Ok(Some(Credentials { username: username.to_owned(), password: password.to_owned() }))
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    /// The token flow: ask `realm` for a token for `service` and `scope`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses `Basic realm="…"` or `Bearer realm="…",service="…",scope="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(',').map_or((after, ""), |(v, a)| (v, a))
        };
        params.insert(key.trim().to_ascii_lowercase(), value.to_owned());
        rest = after.trim_start_matches([',', ' ']);
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(parse_challenge("Basic realm=\"Registry Realm\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                "Bearer realm=\"https://auth.test/token\",service=\"registry.test\",scope=\"repository:a/b:pull,push\""
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.test/token".into(),
                service: Some("registry.test".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn credentials_come_from_the_environment_then_auth_json_then_docker_config() {
        let t = tempfile::tempdir().unwrap();
        let auth = |user: &str| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:secret"));
            format!("{{\"auths\":{{\"127.0.0.1:5000\":{{\"auth\":\"{b64}\"}},\"https://other:1/v1/\":{{\"auth\":\"{b64}\"}}}}}}")
        };
        fs_err::create_dir_all(t.path().join(".config/containers")).unwrap();
        fs_err::create_dir_all(t.path().join(".docker")).unwrap();
        fs_err::write(t.path().join(".docker/config.json"), auth("docker")).unwrap();
        let mut sources = Sources { env: BTreeMap::from([("HOME".into(), t.path().display().to_string())]) };
        let found = |s: &Sources, host: &str| s.lookup(host).unwrap().map(|c| c.username);
        assert_eq!(found(&sources, "127.0.0.1:5000").as_deref(), Some("docker"));
        assert_eq!(found(&sources, "other:1").as_deref(), Some("docker"));
        assert_eq!(found(&sources, "127.0.0.1:5001"), None);
        fs_err::write(t.path().join(".config/containers/auth.json"), auth("podman")).unwrap();
        assert_eq!(found(&sources, "127.0.0.1:5000").as_deref(), Some("podman"));
        sources.env.insert("CANDIDATE_REGISTRY_USERNAME".into(), "env".into());
        sources.env.insert("CANDIDATE_REGISTRY_PASSWORD".into(), "pw".into());
        assert_eq!(found(&sources, "127.0.0.1:5000").as_deref(), Some("env"));
        // A password never shows in a debug print.
        let creds = sources.lookup("x").unwrap().unwrap();
        assert!(!format!("{creds:?}").contains("pw"));
        // A broken file is named, its secret is not.
        fs_err::write(t.path().join(".config/containers/auth.json"), "{\"auths\":{\"h:1\":{\"auth\":\"%%%\"}}}")
            .unwrap();
        sources.env.remove("CANDIDATE_REGISTRY_USERNAME");
        let err = sources.lookup("h:1").unwrap_err().to_string();
        assert!(err.contains("auth.json"), "{err}");
    }
}
