//! A private image registry for tests (feature `testing`): Debian's `docker-registry`
//! (the CNCF distribution registry) on 127.0.0.1 with htpasswd authentication, holding the
//! local busybox image pushed by `skopeo`. containerd pulls from 127.0.0.1 over plain HTTP,
//! so a pull with the right credentials works and one without gets the registry's 401.
//!
//! ```no_run
//! # fn t() -> Result<(), kubelet_cri::testing::TestEnvError> {
//! use kubelet_cri::test_registry::TestRegistry;
//! let Some(registry) = TestRegistry::start("robot", "s3cret")? else {
//!     return Ok(()); // skipped, the reason was printed
//! };
//! let image = registry.push_busybox("team/busybox:private")?;
//! assert!(image.starts_with("127.0.0.1:"));
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::testing::{REQUIRE_ENV, TestEnvError, image_dir, io_err, run};

/// The account the pushes use.
const PUSHER: (&str, &str) = ("pusher", "push-only");
/// How long the registry may take to listen.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// A running registry; dropping it kills the process and removes its storage.
pub struct TestRegistry {
    child: Child,
    addr: SocketAddr,
    // Removed on drop, with the storage and the htpasswd file.
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    /// Start a registry that accepts `username`/`password` only. `Ok(None)` (after printing
    /// why) when `docker-registry`, `skopeo` or `htpasswd` is missing, unless
    /// `KUBELET_TEST_REQUIRE_CONTAINERD=1`: then that is an error.
    pub fn start(username: &str, password: &str) -> Result<Option<Self>, TestEnvError> {
        for tool in ["docker-registry", "skopeo", "htpasswd"] {
            if which(tool).is_none() {
                let why = format!("{tool} not found (scripts/install-deps.sh installs it)");
                if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
                    return Err(TestEnvError::Command {
                        command: tool.to_string(),
                        message: why,
                    });
                }
                eprintln!("SKIPPED: {why}");
                return Ok(None);
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("kregistry-")
            .tempdir()
            .map_err(io_err("/tmp"))?;
        // The given account for the kubelet's pulls, and one of our own for the pushes.
        let mut htpasswd = run(
            "htpasswd",
            &["-Bbn".as_ref(), username.as_ref(), password.as_ref()],
        )?;
        htpasswd.push_str(&run(
            "htpasswd",
            &["-Bbn".as_ref(), PUSHER.0.as_ref(), PUSHER.1.as_ref()],
        )?);
        let htpasswd_file = dir.path().join("htpasswd");
        fs::write(&htpasswd_file, htpasswd).map_err(io_err(&htpasswd_file))?;
        let addr = free_port()?;
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\nauth:\n  htpasswd:\n    realm: kubelet-test\n    path: {}\n",
            dir.path().join("data").display(),
            htpasswd_file.display()
        );
        let config_file = dir.path().join("config.yml");
        fs::write(&config_file, config).map_err(io_err(&config_file))?;
        let log = dir.path().join("registry.log");
        let log_file = fs::File::create(&log).map_err(io_err(&log))?;
        let log_err = log_file.try_clone().map_err(io_err(&log))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_file)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .map_err(|e| TestEnvError::Command {
                command: "docker-registry serve".to_string(),
                message: e.to_string(),
            })?;
        let registry = Self {
            child,
            addr,
            _dir: dir,
        };
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if started.elapsed() > START_DEADLINE {
                return Err(TestEnvError::Command {
                    command: "docker-registry serve".to_string(),
                    message: format!(
                        "not listening on {addr} after {START_DEADLINE:?}: {}",
                        fs::read_to_string(&log).unwrap_or_default()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Some(registry))
    }

    /// `127.0.0.1:<port>`: the registry part of image names and of pull secrets.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Push the local busybox image as `<host>/<repository>` (e.g. `team/busybox:private`)
    /// and return that image name.
    pub fn push_busybox(&self, repository: &str) -> Result<String, TestEnvError> {
        let image = format!("{}/{repository}", self.host());
        let archive = image_dir()?.join("busybox.tar");
        let creds = format!("{}:{}", PUSHER.0, PUSHER.1);
        run(
            "skopeo",
            &[
                "copy".as_ref(),
                "--quiet".as_ref(),
                "--dest-tls-verify=false".as_ref(),
                "--dest-creds".as_ref(),
                creds.as_ref(),
                format!("oci-archive:{}", archive.display()).as_ref(),
                format!("docker://{image}").as_ref(),
            ],
        )?;
        Ok(image)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<SocketAddr, TestEnvError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("127.0.0.1:0"))?;
    listener.local_addr().map_err(io_err("127.0.0.1:0"))
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| Path::new(p).is_file())
}
