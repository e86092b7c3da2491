//! Registry credentials from a pod's `imagePullSecrets`, matched to an image as the
//! reference kubelet's Docker keyring matches them.
//!
//! A secret of type `kubernetes.io/dockerconfigjson` (key `.dockerconfigjson`,
//! `{"auths": {...}}`) or `kubernetes.io/dockercfg` (key `.dockercfg`, the entries at the
//! top level) gives entries keyed by registry (`https://index.docker.io/v1/`,
//! `registry.example.com:5000/team`, `*.example.com`). For an image, every entry whose host
//! (with `*` globs per DNS label), port and path prefix match is a candidate, the most
//! specific first; Docker Hub images also take `index.docker.io` entries. The kubelet tries
//! them in order and pulls anonymously when none matches.
//!
//! ```
//! use kubelet_core::image_credentials::DockerKeyring;
//!
//! let keyring = DockerKeyring::from_docker_config_json(
//!     br#"{"auths": {"registry.example.com": {"username": "u", "password": "p"}}}"#,
//! )
//! .unwrap();
//! let creds = keyring.lookup("registry.example.com/team/app:1.0");
//! assert_eq!(creds[0].username, "u");
//! assert!(keyring.lookup("docker.io/library/busybox").is_empty());
//! ```

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;

use crate::runtime::AuthConfig;

/// The host Docker Hub credentials are filed under.
const DEFAULT_REGISTRY_HOST: &str = "index.docker.io";
const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
const DOCKERCFG_KEY: &str = ".dockercfg";

#[derive(Debug, Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, DockerConfigEntry>,
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfigEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// base64 of `user:password`; wins over the separate fields.
    #[serde(default)]
    auth: String,
}

/// Credentials by registry key, in lookup order (most specific first).
#[derive(Debug, Clone, Default)]
pub struct DockerKeyring {
    /// Sorted keys (reverse), each with its credentials in the order they were added.
    index: Vec<String>,
    creds: BTreeMap<String, Vec<AuthConfig>>,
}

impl DockerKeyring {
    /// The keyring of a pod's pull secrets. Secrets of other types, or without their key,
    /// add nothing; a key that is not valid JSON is an error naming the secret.
    pub fn from_secrets(secrets: &[Secret]) -> Result<Self, String> {
        let mut keyring = Self::default();
        for secret in secrets {
            let name = secret.metadata.name.as_deref().unwrap_or_default();
            let namespace = secret.metadata.namespace.as_deref().unwrap_or_default();
            let data = |key: &str| {
                secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|b| b.0.as_slice())
                    .filter(|b| !b.is_empty())
            };
            let entries = match secret.type_.as_deref() {
                Some(DOCKER_CONFIG_JSON_TYPE) => match data(DOCKER_CONFIG_JSON_KEY) {
                    Some(bytes) => serde_json::from_slice::<DockerConfigJson>(bytes)
                        .map(|c| c.auths)
                        .map_err(|e| {
                            format!("secret {namespace}/{name}: {DOCKER_CONFIG_JSON_KEY}: {e}")
                        })?,
                    None => continue,
                },
                Some(DOCKERCFG_TYPE) => match data(DOCKERCFG_KEY) {
                    Some(bytes) => {
                        serde_json::from_slice::<BTreeMap<String, DockerConfigEntry>>(bytes)
                            .map_err(|e| {
                                format!("secret {namespace}/{name}: {DOCKERCFG_KEY}: {e}")
                            })?
                    }
                    None => continue,
                },
                _ => continue,
            };
            keyring.add(entries)?;
        }
        Ok(keyring)
    }

    /// The keyring of one `.dockerconfigjson` document.
    pub fn from_docker_config_json(bytes: &[u8]) -> Result<Self, String> {
        let config: DockerConfigJson =
            serde_json::from_slice(bytes).map_err(|e| format!("{DOCKER_CONFIG_JSON_KEY}: {e}"))?;
        let mut keyring = Self::default();
        keyring.add(config.auths)?;
        Ok(keyring)
    }

    fn add(&mut self, entries: BTreeMap<String, DockerConfigEntry>) -> Result<(), String> {
        for (location, entry) in entries {
            let (username, password) = if entry.auth.is_empty() {
                (entry.username, entry.password)
            } else {
                decode_auth(&entry.auth).map_err(|e| format!("registry {location:?}: auth: {e}"))?
            };
            let Some(url) = SchemelessUrl::parse(&location) else {
                continue;
            };
            // `/v1/` and `/v2/` mean the registry itself, as the Docker client treats them.
            let path = url
                .path
                .strip_prefix("/v1/")
                .or_else(|| url.path.strip_prefix("/v2/"))
                .map(|rest| format!("/{rest}"))
                .unwrap_or(url.path.clone());
            let key = if path.is_empty() || path == "/" {
                url.host_port()
            } else {
                format!("{}{path}", url.host_port())
            };
            self.creds.entry(key.clone()).or_default().push(AuthConfig {
                username,
                password,
                ..AuthConfig::default()
            });
            if !self.index.contains(&key) {
                self.index.push(key);
            }
        }
        // More specific keys first: "quay.io/team" before "quay.io".
        self.index.sort_by(|a, b| b.cmp(a));
        Ok(())
    }

    /// The credentials to try for `image`, in order; empty means pull anonymously.
    pub fn lookup(&self, image: &str) -> Vec<AuthConfig> {
        let repo = normalize_repository(image);
        let mut out = Vec::new();
        if let Some(target) = SchemelessUrl::parse(&repo) {
            for key in &self.index {
                if let Some(glob) = SchemelessUrl::parse(key)
                    && urls_match(&glob, &target)
                {
                    out.extend(self.creds[key].iter().cloned());
                }
            }
        }
        if out.is_empty() && is_default_registry(&repo) {
            out.extend(
                self.creds
                    .get(DEFAULT_REGISTRY_HOST)
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
        }
        out
    }

    /// Whether the keyring holds no credentials.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

fn decode_auth(auth: &str) -> Result<(String, String), String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|e| e.to_string())?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| "must be base64 of user:password".to_string())?;
    Ok((
        user.to_string(),
        password.trim_end_matches('\n').to_string(),
    ))
}

/// The repository of an image as the reference normalizes it before the lookup:
/// `busybox:1.36` -> `docker.io/library/busybox`, tag and digest dropped.
pub fn normalize_repository(image: &str) -> String {
    let without_digest = image.split('@').next().unwrap_or(image);
    // A tag is after the last ':' that follows the last '/'.
    let repo = match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    };
    let (first, rest) = match repo.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (repo, None),
    };
    let has_domain =
        rest.is_some() && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_domain, rest) {
        (true, Some(rest)) if first == "index.docker.io" => format!("docker.io/{rest}"),
        (true, _) => repo.to_string(),
        (false, Some(_)) => format!("docker.io/{repo}"),
        (false, None) => format!("docker.io/library/{repo}"),
    }
}

/// Whether an image comes from Docker Hub, by the reference's reading of its name.
fn is_default_registry(repo: &str) -> bool {
    let mut parts = repo.splitn(2, '/');
    let first = parts.next().unwrap_or_default();
    if first.is_empty() {
        return false;
    }
    if parts.next().is_none() {
        return true;
    }
    if first == "docker.io" || first == "index.docker.io" {
        return true;
    }
    !(first.contains('.') || first.contains(':')) && first != "localhost"
}

/// A registry location without its scheme: host, optional port, path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SchemelessUrl {
    host: String,
    port: Option<String>,
    path: String,
}

impl SchemelessUrl {
    fn parse(location: &str) -> Option<Self> {
        let rest = location
            .strip_prefix("https://")
            .or_else(|| location.strip_prefix("http://"))
            .unwrap_or(location);
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return None;
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => {
                (h, Some(p.to_string()))
            }
            _ => (authority, None),
        };
        Some(Self {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    fn host_port(&self) -> String {
        match &self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }
}

/// The reference's `URLsMatch`: same number of host labels, each matching its glob, same
/// port, and the target's path under the glob's.
fn urls_match(glob: &SchemelessUrl, target: &SchemelessUrl) -> bool {
    let glob_labels: Vec<&str> = glob.host.split('.').collect();
    let target_labels: Vec<&str> = target.host.split('.').collect();
    if glob_labels.len() != target_labels.len() || glob.port != target.port {
        return false;
    }
    glob_labels
        .iter()
        .zip(&target_labels)
        .all(|(g, t)| glob_match(g, t))
        && target.path.starts_with(&glob.path)
}

/// Shell-style match of one label: `*` any run, `?` one character.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn secret(type_: &str, key: &str, body: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("pull".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            type_: Some(type_.into()),
            data: Some(BTreeMap::from([(
                key.to_string(),
                ByteString(body.as_bytes().to_vec()),
            )])),
            ..Default::default()
        }
    }

    fn users(creds: &[AuthConfig]) -> Vec<&str> {
        creds.iter().map(|c| c.username.as_str()).collect()
    }

    #[test]
    fn repositories_normalize_as_the_reference() {
        for (image, want) in [
            ("busybox", "docker.io/library/busybox"),
            ("busybox:1.36", "docker.io/library/busybox"),
            ("team/app:v1", "docker.io/team/app"),
            (
                "docker.io/library/busybox:local",
                "docker.io/library/busybox",
            ),
            ("index.docker.io/team/app", "docker.io/team/app"),
            (
                "registry.example.com:5000/team/app:1@sha256:abc",
                "registry.example.com:5000/team/app",
            ),
            ("localhost/app", "localhost/app"),
            ("localhost:5000/app:2", "localhost:5000/app"),
        ] {
            assert_eq!(normalize_repository(image), want, "{image}");
        }
    }

    #[test]
    fn matching_by_host_glob_port_and_path_most_specific_first() {
        let body = r#"{"auths": {
            "https://registry.example.com": {"username": "host"},
            "registry.example.com/team": {"username": "team"},
            "*.example.com": {"username": "glob"},
            "registry.example.com:5000": {"username": "port"},
            "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="}
        }}"#;
        let keyring = DockerKeyring::from_secrets(&[secret(
            DOCKER_CONFIG_JSON_TYPE,
            ".dockerconfigjson",
            body,
        )])
        .unwrap();
        assert_eq!(
            users(&keyring.lookup("registry.example.com/team/app:1")),
            vec!["team", "host", "glob"]
        );
        assert_eq!(
            users(&keyring.lookup("registry.example.com/other/app")),
            vec!["host", "glob"]
        );
        assert_eq!(users(&keyring.lookup("cache.example.com/x")), vec!["glob"]);
        assert_eq!(
            users(&keyring.lookup("registry.example.com:5000/x")),
            vec!["port"]
        );
        // Globs do not cross labels.
        assert!(keyring.lookup("a.b.example.com/x").is_empty());
        // Docker Hub images take the index.docker.io entry; `auth` is user:password.
        let hub = keyring.lookup("busybox:1.36");
        assert_eq!(users(&hub), vec!["hub"]);
        assert_eq!(hub[0].password, "secret");
        assert!(keyring.lookup("quay.io/app").is_empty());
    }

    #[test]
    fn dockercfg_secrets_and_other_types() {
        let cfg = secret(
            DOCKERCFG_TYPE,
            ".dockercfg",
            r#"{"quay.io": {"username": "q", "password": "p", "email": "e@x"}}"#,
        );
        let opaque = secret(
            "Opaque",
            ".dockercfg",
            r#"{"quay.io": {"username": "ignored"}}"#,
        );
        let keyring = DockerKeyring::from_secrets(&[opaque, cfg]).unwrap();
        assert_eq!(users(&keyring.lookup("quay.io/team/app")), vec!["q"]);

        let broken = secret(DOCKER_CONFIG_JSON_TYPE, ".dockerconfigjson", "{not json");
        let err = DockerKeyring::from_secrets(&[broken]).unwrap_err();
        assert!(
            err.starts_with("secret shop/pull: .dockerconfigjson:"),
            "{err}"
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("reg?stry", "registry"));
        assert!(glob_match("a*c", "abbbc"));
        assert!(!glob_match("a*c", "abbbd"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }
}
