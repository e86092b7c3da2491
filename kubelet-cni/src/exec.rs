//! Running plugin binaries: lookup in the bin dirs, the spec's environment, stdin, the
//! spec's error format, timeouts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::error::{CniError, PluginError};

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach a container to the network.
    Add,
    /// Detach it.
    Del,
    /// Verify an attachment.
    Check,
    /// Whether the plugin is ready for ADDs (1.1).
    Status,
    /// Remove stale resources (1.1).
    Gc,
    /// The versions the plugin speaks.
    Version,
}

impl Command {
    /// The `CNI_COMMAND` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }

    /// Whether the command is about one container attachment (and gets its variables).
    fn per_attachment(self) -> bool {
        matches!(self, Self::Add | Self::Del | Self::Check)
    }
}

/// The per-attachment environment of a call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationEnv {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (may be empty for DEL when the namespace is gone).
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`, as `K=V` pairs joined with `;`.
    pub args: Vec<(String, String)>,
}

/// The environment variables the spec defines, unset for commands that do not take them.
const CNI_VARS: &[&str] = &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"];

/// Finds and runs plugin binaries.
#[derive(Debug, Clone)]
pub struct PluginExec {
    bin_dirs: Vec<PathBuf>,
    timeout: Duration,
}

impl PluginExec {
    /// Search `bin_dirs` in order; kill a plugin that runs longer than `timeout`.
    pub fn new(bin_dirs: Vec<PathBuf>, timeout: Duration) -> Self {
        Self { bin_dirs, timeout }
    }

    /// The bin dirs.
    pub fn bin_dirs(&self) -> &[PathBuf] {
        &self.bin_dirs
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The `CNI_PATH` value.
    pub fn cni_path(&self) -> String {
        self.bin_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The first executable file named `plugin` in the bin dirs.
    pub fn find(&self, plugin: &str) -> Result<PathBuf, CniError> {
        for dir in &self.bin_dirs {
            let candidate = dir.join(plugin);
            if let Ok(meta) = std::fs::metadata(&candidate)
                && meta.is_file()
                && meta.permissions().mode() & 0o111 != 0
            {
                return Ok(candidate);
            }
        }
        Err(CniError::PluginNotFound {
            plugin: plugin.to_string(),
            dirs: self.bin_dirs.clone(),
        })
    }

    /// Run `plugin` with `command`, `stdin` and (for ADD/DEL/CHECK) `env`; returns stdout on
    /// success, and the plugin's CNI error object (or its output) on failure.
    pub async fn run(
        &self,
        plugin: &str,
        command: Command,
        env: Option<&InvocationEnv>,
        stdin: &[u8],
    ) -> Result<Vec<u8>, CniError> {
        let path = self.find(plugin)?;
        let mut cmd = tokio::process::Command::new(&path);
        cmd.env("CNI_COMMAND", command.as_str())
            .env("CNI_PATH", self.cni_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for var in CNI_VARS {
            cmd.env_remove(var);
        }
        if command.per_attachment() {
            let env = env.cloned().unwrap_or_default();
            let args: Vec<String> = env.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            cmd.env("CNI_CONTAINERID", &env.container_id)
                .env("CNI_NETNS", &env.netns)
                .env("CNI_IFNAME", &env.ifname)
                .env("CNI_ARGS", args.join(";"));
        }
        tracing::debug!(plugin, command = command.as_str(), path = %path.display(), "invoking CNI plugin");
        let child = spawn(&mut cmd, &path, plugin).await?;
        let output = tokio::time::timeout(self.timeout, communicate(child, stdin)).await;
        let output = match output {
            Err(_) => {
                return Err(CniError::Timeout {
                    plugin: plugin.to_string(),
                    command: command.as_str().to_string(),
                    timeout: self.timeout,
                });
            }
            Ok(Err(e)) => {
                return Err(CniError::Exec {
                    plugin: plugin.to_string(),
                    path,
                    source: e,
                });
            }
            Ok(Ok(o)) => o,
        };
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(plugin_failure(plugin, command, &output))
    }
}

/// Spawn, retrying briefly on ETXTBSY: a binary written just now may still be open for
/// writing in a child another thread forked in the meantime.
async fn spawn(
    cmd: &mut tokio::process::Command,
    path: &Path,
    plugin: &str,
) -> Result<tokio::process::Child, CniError> {
    let mut attempts = 0;
    loop {
        match cmd.spawn() {
            Ok(c) => return Ok(c),
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempts < 20 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => {
                return Err(CniError::Exec {
                    plugin: plugin.to_string(),
                    path: path.to_path_buf(),
                    source: e,
                });
            }
        }
    }
}

async fn communicate(
    mut child: tokio::process::Child,
    stdin: &[u8],
) -> std::io::Result<std::process::Output> {
    let input = child.stdin.take();
    let write = async move {
        if let Some(mut input) = input {
            // A plugin may exit without reading stdin (e.g. on a bad environment); the exit
            // status and output tell what happened, so a broken pipe is not the error.
            match input.write_all(stdin).await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e),
                _ => {}
            }
            drop(input);
        }
        Ok(())
    };
    let (written, output) = tokio::join!(write, child.wait_with_output());
    written?;
    output
}

fn plugin_failure(plugin: &str, command: Command, output: &std::process::Output) -> CniError {
    if let Some(error) = parse_error(&output.stdout) {
        return CniError::Plugin {
            plugin: plugin.to_string(),
            command: command.as_str().to_string(),
            error: Box::new(error),
        };
    }
    let text = if output.stdout.iter().any(|b| !b.is_ascii_whitespace()) {
        &output.stdout
    } else {
        &output.stderr
    };
    CniError::PluginFailed {
        plugin: plugin.to_string(),
        command: command.as_str().to_string(),
        status: output.status.to_string(),
        output: String::from_utf8_lossy(text).trim().to_string(),
    }
}

/// Parse the spec's error object (`code`, `msg`, `details`) from a plugin's stdout.
pub fn parse_error(stdout: &[u8]) -> Option<PluginError> {
    serde_json::from_slice::<PluginError>(stdout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn spec_error_objects() {
        type Case<'a> = (&'a str, Option<(ErrorCode, &'a str, &'a str)>);
        let cases: &[Case] = &[
            (
                r#"{"cniVersion":"1.0.0","code":7,"msg":"Invalid Configuration","details":"Network 192.168.0.0/31 too small"}"#,
                Some((
                    ErrorCode::InvalidNetworkConfig,
                    "Invalid Configuration",
                    "Network 192.168.0.0/31 too small",
                )),
            ),
            (
                r#"{"code":1,"msg":"incompatible CNI versions"}"#,
                Some((
                    ErrorCode::IncompatibleVersion,
                    "incompatible CNI versions",
                    "",
                )),
            ),
            (
                r#"{"code":11,"msg":"busy"}"#,
                Some((ErrorCode::TryAgainLater, "busy", "")),
            ),
            (
                r#"{"code":50,"msg":"down"}"#,
                Some((ErrorCode::PluginNotAvailable, "down", "")),
            ),
            (
                r#"{"code":51,"msg":"down"}"#,
                Some((ErrorCode::PluginNotAvailableLimitedConnectivity, "down", "")),
            ),
            (
                r#"{"code":3,"msg":"gone"}"#,
                Some((ErrorCode::UnknownContainer, "gone", "")),
            ),
            (
                r#"{"code":123,"msg":"mine"}"#,
                Some((ErrorCode::Other(123), "mine", "")),
            ),
            (r#"{"msg":"no code"}"#, None),
            (r#"{"code":"7","msg":"string code"}"#, None),
            ("plain text failure", None),
            ("", None),
        ];
        for (input, want) in cases {
            let got = parse_error(input.as_bytes()).map(|e| (e.code, e.msg, e.details));
            let want = want.map(|(c, m, d)| (c, m.to_string(), d.to_string()));
            assert_eq!(got, want, "{input}");
        }
        for code in [1, 2, 3, 4, 5, 6, 7, 11, 50, 51, 100, 999] {
            assert_eq!(ErrorCode::from(code).as_u32(), code);
        }
        assert!(ErrorCode::TryAgainLater.is_transient());
        assert!(!ErrorCode::InvalidNetworkConfig.is_transient());
    }
}
