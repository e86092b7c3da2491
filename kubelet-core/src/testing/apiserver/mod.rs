//! A fake kube-apiserver for tests: real HTTP(S) on 127.0.0.1, answering what a kubelet
//! and kube-rs use the way kube-apiserver does.
//!
//! What it does as the real server:
//!
//! - core/v1 pods, nodes, namespaces (`default`, `kube-system`, `kube-public`,
//!   `kube-node-lease` exist), configmaps, secrets, serviceaccounts (a `default` one per
//!   namespace, as the serviceaccount controller makes) and `serviceaccounts/<n>/token`,
//!   core/v1 and events.k8s.io/v1 events (one storage, converted), coordination.k8s.io/v1
//!   leases, core/v1 persistentvolumes and persistentvolumeclaims (with `status`),
//!   storage.k8s.io/v1 csinodes, csidrivers, storageclasses and volumeattachments (with
//!   `status`), with kube-apiserver v1.28's defaults and validation of them; discovery
//!   (`/api`, `/apis`, `/api/v1`, `/apis/<g>/<v>`), `/version`, `/healthz`, `/livez`,
//!   `/readyz`.
//! - One global resourceVersion; uid, creationTimestamp, generateName, namespace,
//!   generation (pods) set by the server; pod defaults (restartPolicy, grace period,
//!   imagePullPolicy, phase Pending, qosClass...); 201 on create, 200 otherwise; errors
//!   as `Status` objects with the real reasons and codes ([`ApiError`]).
//! - PUT with optimistic concurrency; a write that changes nothing gets no new
//!   resourceVersion; `status` subresources that change only status, and main-resource
//!   writes that leave status alone; merge and JSON patches, and strategic merge patches
//!   applied as kube-apiserver applies them ([`crate::strategic_merge`], each field's
//!   strategy and merge key from the real server's OpenAPI document): a `$patch` element
//!   inside an atomic list is stored as an element, directives under a field the object lacks
//!   are dropped, lists are ordered as apimachinery orders them, and refusals carry the real
//!   codes and messages. A `metadata.uid` in a patch that is not the object's is an
//!   immutable-field error (422), a `metadata.resourceVersion` a conflict (409).
//! - Every write passes through the object's API type (unknown fields dropped, missing
//!   required fields zero, empty lists left out, a value of the wrong type refused), and pod
//!   status writes through the real server's conversion and validation (`podIP` wins over
//!   `podIPs`; IPs valid and one per family, `hostIPs[0]` equal to `hostIP`, a container
//!   terminated for good stays terminated, condition types qualified names). Each of these
//!   is checked against a real kube-apiserver by `tests/patch_conformance.rs`.
//! - DELETE with preconditions and grace period; a pod bound to a node (and not
//!   terminated) is deleted gracefully: deletionTimestamp and deletionGracePeriodSeconds are
//!   set and the object stays until a DELETE with `gracePeriodSeconds=0`. A DELETE answers
//!   with the object for pods and namespaces and with a Success `Status` otherwise.
//!   Deleting a namespace deletes its contents at once (the namespace controller's work).
//! - LIST and WATCH with field and label selectors, `limit`/`continue`,
//!   resourceVersion semantics (unset, `0`, exact, not-older-than), watches resumed from a
//!   bounded history (410 `Expired` as an ERROR event past it), bookmarks,
//!   `sendInitialEvents`, `timeoutSeconds`, and ADDED/DELETED when an object starts or stops
//!   matching a watch's selectors.
//!
//! What it does not do: server-side apply (415 UnsupportedMediaType), `dryRun` (400),
//! protobuf (answers JSON), HTTP/2, aggregated discovery (v2; the legacy documents are served),
//! verifiable service-account tokens (TokenRequest answers a JWT-shaped, unsigned token),
//! Go's rendering of empty structs (the real server writes `"lastState": {}`, the fake
//! nothing; clients decode both the same),
//! finalizers and garbage collection (ignored), admission plugins (no service account
//! token volumes are injected), field validation beyond what a kubelet's writes can hit,
//! authorization (any authenticated user may do anything).
//!
//! Tests reach it only through its URL and a kubeconfig ([`FakeApiServer::kubeconfig`]),
//! and drive it directly through [`FakeApiServer::create`] and friends, fault injection
//! ([`FakeApiServer::fail_next`], [`FakeApiServer::drop_watches`],
//! [`FakeApiServer::start_outage`]) and the request log ([`FakeApiServer::requests`]).
//! [`TestApiServer::from_env`] gives a real kube-apiserver instead when one is available
//! (`KUBELET_TEST_ASSETS`, see [`crate::testing::envtest`]; or a cluster of your own with
//! `KUBELET_TEST_REAL_CLUSTER=1` and `KUBECONFIG`), so that kubeconfig-only tests are checked
//! against the real thing.

mod cluster;
mod convert;
mod faults;
mod patch;
mod pod_status;
mod resources;
mod routes;
mod selectors;
mod services;
mod status;
mod storage;
mod store;
mod tls;
mod token;
mod typed;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use k8s_openapi::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use cluster::{REAL_CLUSTER_ENV, TestApiServer};
pub use faults::{FaultKind, FaultMatch, RequestRecord, Verb};
pub use patch::{PatchError, PatchType, json_patch, merge_patch};
pub use status::ApiError;
pub use store::{DeleteOptions, EventType};
pub(crate) use tls::new_ca;

use faults::Faults;
use resources::{ResourceInfo, lookup};
use store::{Part, Store};
use tls::Pki;

/// Errors of the fake API server itself (not API errors, which are [`ApiError`]).
#[derive(Debug, thiserror::Error)]
pub enum FakeApiServerError {
    /// Binding the listener failed.
    #[error("binding the fake API server to {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Generating the PKI or the TLS configuration failed.
    #[error("fake API server TLS ({what}): {message}")]
    Tls {
        /// What was being made.
        what: &'static str,
        /// The cause.
        message: String,
    },
    /// Writing the kubeconfig failed.
    #[error("writing kubeconfig {path}: {source}")]
    WriteKubeconfig {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The object type is not served by the fake.
    #[error("{kind} ({api_version}) is not served by the fake API server")]
    NotServed {
        /// Kind.
        kind: String,
        /// apiVersion.
        api_version: String,
    },
    /// An object did not (de)serialize as its type.
    #[error("{kind} {name:?}: {message}")]
    Decode {
        /// Kind.
        kind: &'static str,
        /// Object name.
        name: String,
        /// The serde error.
        message: String,
    },
    /// The server answered an API error.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The opt-in real cluster is not usable.
    #[error("real cluster for tests: {message}")]
    RealCluster {
        /// What is wrong.
        message: String,
    },
    /// The real etcd + kube-apiserver of [`crate::testing::envtest`] could not be started or
    /// used.
    #[error("envtest: {0}")]
    Envtest(#[from] crate::testing::envtest::EnvtestError),
    /// A wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
    },
}

/// Settings of a [`FakeApiServer`].
#[derive(Debug, Clone)]
pub struct FakeApiServerOptions {
    /// How many store events are kept for watches to resume from (kube-apiserver's watch
    /// cache keeps a bounded window too); older resourceVersions get 410 Gone.
    pub history_limit: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK (the real server
    /// sends one about every minute).
    pub bookmark_interval: Duration,
    /// Bearer tokens accepted, with the user each one authenticates. Over HTTPS a token is
    /// always generated (see [`FakeApiServer::token`]).
    pub tokens: HashMap<String, String>,
    /// Whether requests without credentials are refused (403 for `system:anonymous`).
    /// Always on over HTTPS.
    pub require_auth: bool,
}

impl Default for FakeApiServerOptions {
    fn default() -> Self {
        Self {
            history_limit: 1000,
            bookmark_interval: Duration::from_secs(60),
            tokens: HashMap::new(),
            require_auth: false,
        }
    }
}

/// State shared by the accept loop, connections and the test handle.
pub(crate) struct Shared {
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<RequestRecord>>,
    tokens: Mutex<HashMap<String, String>>,
    pub(crate) drop_watches: tokio_watch::Sender<u64>,
    /// True while connections must be cut (outage, shutdown).
    cut: tokio_watch::Sender<bool>,
    pub(crate) require_auth: bool,
    pub(crate) bookmark_interval: Duration,
    pub(crate) address: String,
    pki: Option<Pki>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge the server for the others.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn lock_store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn lock_tokens(&self) -> MutexGuard<'_, HashMap<String, String>> {
        lock(&self.tokens)
    }

    pub(crate) fn take_fault(&self, verb: Verb, resource: &str) -> Option<FaultKind> {
        lock(&self.faults).take(verb, resource)
    }

    pub(crate) fn log(&self, r: RequestRecord) {
        lock(&self.log).push(r);
    }
}

/// A running fake kube-apiserver. Dropping it stops it and closes its connections.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    token: Option<String>,
    outage: tokio_watch::Sender<bool>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

fn resource_of<K: Resource>() -> Result<&'static ResourceInfo, FakeApiServerError> {
    lookup(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT).ok_or_else(|| FakeApiServerError::NotServed {
        kind: K::KIND.to_string(),
        api_version: K::API_VERSION.to_string(),
    })
}

fn to_value<K: Serialize>(kind: &'static str, obj: &K) -> Result<Value, FakeApiServerError> {
    serde_json::to_value(obj).map_err(|e| FakeApiServerError::Decode {
        kind,
        name: String::new(),
        message: e.to_string(),
    })
}

fn from_value<K: DeserializeOwned>(kind: &'static str, v: Value) -> Result<K, FakeApiServerError> {
    let name = v
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    serde_json::from_value(v).map_err(|e| FakeApiServerError::Decode {
        kind,
        name,
        message: e.to_string(),
    })
}

fn ns_and_name(v: &Value) -> (String, String) {
    let get = |f: &str| {
        v.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (get("namespace"), get("name"))
}

impl FakeApiServer {
    /// Starts over plain HTTP on 127.0.0.1 with a free port and default options.
    pub async fn start() -> Result<Self, FakeApiServerError> {
        Self::start_with(FakeApiServerOptions::default(), false).await
    }

    /// Starts over HTTPS with a CA generated now, a bearer token (see [`Self::token`])
    /// and client certificates ([`Self::kubeconfig_with_client_cert`]) accepted.
    pub async fn start_tls() -> Result<Self, FakeApiServerError> {
        Self::start_with(FakeApiServerOptions::default(), true).await
    }

    /// Starts with the given options, over HTTPS when `tls`.
    pub async fn start_with(
        mut options: FakeApiServerOptions,
        tls: bool,
    ) -> Result<Self, FakeApiServerError> {
        let bind = "127.0.0.1:0";
        let listener =
            TcpListener::bind(bind)
                .await
                .map_err(|source| FakeApiServerError::Bind {
                    addr: bind.to_string(),
                    source,
                })?;
        let addr = listener
            .local_addr()
            .map_err(|source| FakeApiServerError::Bind {
                addr: bind.to_string(),
                source,
            })?;
        let (pki, token) = if tls {
            let pki = Pki::generate()?;
            let token = format!("fake-token-{}", random_hex());
            options
                .tokens
                .insert(token.clone(), "kubelet-test".to_string());
            options.require_auth = true;
            (Some(pki), Some(token))
        } else {
            (None, None)
        };
        let scheme = if tls { "https" } else { "http" };
        let (drop_watches, _) = tokio_watch::channel(0);
        let (cut, _) = tokio_watch::channel(false);
        let tls_acceptor = pki
            .as_ref()
            .map(|p| TlsAcceptor::from(p.server_config.clone()));
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(options.history_limit)),
            faults: Mutex::new(Faults::default()),
            log: Mutex::new(Vec::new()),
            tokens: Mutex::new(options.tokens),
            drop_watches,
            cut,
            require_auth: options.require_auth,
            bookmark_interval: options.bookmark_interval,
            address: format!("{scheme}://{addr}"),
            pki,
        });
        let (outage, _) = tokio_watch::channel(false);
        let server = Self {
            shared,
            addr,
            tls: tls_acceptor,
            token,
            outage,
            accept: Mutex::new(None),
        };
        let task = server.spawn_accept(listener);
        *lock(&server.accept) = Some(task);
        tracing::debug!(url = %server.url(), "fake apiserver started");
        Ok(server)
    }

    fn spawn_accept(&self, listener: TcpListener) -> JoinHandle<()> {
        let shared = self.shared.clone();
        let tls = self.tls.clone();
        let mut outage = self.outage.subscribe();
        let addr = self.addr;
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                if *outage.borrow_and_update() {
                    // Closing the socket makes connects fail with ECONNREFUSED.
                    listener = None;
                    if outage.wait_for(|o| !*o).await.is_err() {
                        return;
                    }
                    continue;
                }
                let l = match &listener {
                    Some(l) => l,
                    None => match TcpListener::bind(addr).await {
                        Ok(l) => listener.insert(l),
                        Err(e) => {
                            tracing::warn!(%addr, error = %e, "fake apiserver could not rebind after an outage; retrying");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                tokio::select! {
                    accepted = l.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = shared.clone();
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            match tls {
                                None => serve_connection(shared, stream, None).await,
                                Some(acceptor) => {
                                    let Ok(tls_stream) = acceptor.accept(stream).await else { return };
                                    let user = tls_stream
                                        .get_ref()
                                        .1
                                        .peer_certificates()
                                        .and_then(|c| c.first())
                                        .and_then(|c| shared.pki.as_ref().and_then(|p| p.user_of(c)));
                                    serve_connection(shared, tls_stream, user).await;
                                }
                            }
                        });
                    }
                    _ = outage.changed() => {}
                }
            }
        })
    }

    /// The base URL, `http(s)://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.shared.address.clone()
    }

    /// The bearer token the kubeconfig carries (HTTPS servers).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The CA certificate in PEM (HTTPS servers).
    pub fn ca_pem(&self) -> Option<&str> {
        self.shared.pki.as_ref().map(|p| p.ca_pem.as_str())
    }

    /// Accepts another bearer token for `user`.
    pub fn add_token(&self, token: &str, user: &str) {
        self.shared
            .lock_tokens()
            .insert(token.to_string(), user.to_string());
    }

    fn kubeconfig_with_user(&self, user_block: &str) -> String {
        let ca = self
            .ca_pem()
            .map(|pem| format!("    certificate-authority-data: {}\n", STANDARD.encode(pem)))
            .unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n{ca}contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake-user\n    namespace: default\ncurrent-context: fake\npreferences: {{}}\nusers:\n- name: fake-user\n  user:{user_block}\n",
            url = self.url(),
        )
    }

    /// A kubeconfig (YAML) for this server: its URL, CA and bearer token (HTTPS), usable
    /// unchanged by kube-rs and the kubelet's `--kubeconfig`.
    pub fn kubeconfig(&self) -> String {
        match &self.token {
            Some(t) => self.kubeconfig_with_user(&format!("\n    token: {t}")),
            None => self.kubeconfig_with_user(" {}"),
        }
    }

    /// A kubeconfig that authenticates with a new client certificate for `user` in
    /// `groups` (e.g. `system:node:n1` in `system:nodes`). HTTPS servers only.
    pub fn kubeconfig_with_client_cert(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<String, FakeApiServerError> {
        let pki = self
            .shared
            .pki
            .as_ref()
            .ok_or_else(|| FakeApiServerError::Tls {
                what: "client certificate",
                message: "the server was started without TLS".to_string(),
            })?;
        let (cert, key) = pki.issue_client(user, groups)?;
        Ok(self.kubeconfig_with_user(&format!(
            "\n    client-certificate-data: {}\n    client-key-data: {}",
            STANDARD.encode(cert),
            STANDARD.encode(key)
        )))
    }

    /// Writes [`Self::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), FakeApiServerError> {
        std::fs::write(path, self.kubeconfig()).map_err(|source| {
            FakeApiServerError::WriteKubeconfig {
                path: path.display().to_string(),
                source,
            }
        })
    }

    // ---- direct store access ----

    /// Creates an object as a POST would (server-filled metadata, defaults, validation).
    pub fn create<K>(&self, obj: &K) -> Result<K, FakeApiServerError>
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        let info = resource_of::<K>()?;
        let v = to_value(K::KIND, obj)?;
        let (ns, _) = ns_and_name(&v);
        let ns = if info.namespaced && ns.is_empty() {
            "default".to_string()
        } else {
            ns
        };
        let created = self
            .shared
            .lock_store()
            .create(info, &ns, convert::to_internal(info, &v))?;
        from_value(K::KIND, convert::to_external(info, &created))
    }

    /// Reads an object (`namespace` is ignored for cluster-scoped kinds).
    pub fn get<K>(&self, namespace: &str, name: &str) -> Result<K, FakeApiServerError>
    where
        K: Resource + DeserializeOwned,
    {
        let info = resource_of::<K>()?;
        let v = self.shared.lock_store().get(info, namespace, name)?;
        from_value(K::KIND, convert::to_external(info, &v))
    }

    /// Reads an object if it exists.
    pub fn try_get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, FakeApiServerError>
    where
        K: Resource + DeserializeOwned,
    {
        match self.get::<K>(namespace, name) {
            Ok(k) => Ok(Some(k)),
            Err(FakeApiServerError::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Lists objects, in one namespace or all.
    pub fn list<K>(&self, namespace: Option<&str>) -> Result<Vec<K>, FakeApiServerError>
    where
        K: Resource + DeserializeOwned,
    {
        let info = resource_of::<K>()?;
        let (items, _) = self.shared.lock_store().list(
            info,
            namespace,
            &selectors::Selectors::default(),
            None,
        )?;
        items
            .into_iter()
            .map(|v| from_value(K::KIND, convert::to_external(info, &v)))
            .collect()
    }

    /// Replaces an object as a PUT would (status kept; optimistic concurrency when the
    /// object carries a resourceVersion).
    pub fn replace<K>(&self, obj: &K) -> Result<K, FakeApiServerError>
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        self.write(obj, Part::Main)
    }

    /// Replaces an object's status as a PUT to `/status` would.
    pub fn replace_status<K>(&self, obj: &K) -> Result<K, FakeApiServerError>
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        self.write(obj, Part::Status)
    }

    fn write<K>(&self, obj: &K, part: Part) -> Result<K, FakeApiServerError>
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        let info = resource_of::<K>()?;
        let v = convert::to_internal(info, &to_value(K::KIND, obj)?);
        let (ns, name) = ns_and_name(&v);
        let ns = if info.namespaced && ns.is_empty() {
            "default".to_string()
        } else {
            ns
        };
        let out = self
            .shared
            .lock_store()
            .update_with(info, &ns, &name, part, move |_| Ok(v))?;
        from_value(K::KIND, convert::to_external(info, &out))
    }

    /// Changes an object in place through `f` (main resource, or status with `status`).
    pub fn modify<K>(
        &self,
        namespace: &str,
        name: &str,
        status: bool,
        f: impl FnOnce(&mut K),
    ) -> Result<K, FakeApiServerError>
    where
        K: Resource + Serialize + DeserializeOwned,
    {
        let mut obj = self.get::<K>(namespace, name)?;
        f(&mut obj);
        self.write(&obj, if status { Part::Status } else { Part::Main })
    }

    /// Deletes an object as a DELETE would; returns its last (or gracefully deleting) state.
    pub fn delete<K>(
        &self,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<K, FakeApiServerError>
    where
        K: Resource + DeserializeOwned,
    {
        let info = resource_of::<K>()?;
        let v = self
            .shared
            .lock_store()
            .delete(info, namespace, name, options)?;
        from_value(K::KIND, convert::to_external(info, &v))
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock_store().current_rv()
    }

    /// Forgets all watch history, as an etcd compaction: watches and exact lists from any
    /// earlier resourceVersion get 410 Gone.
    pub fn compact(&self) {
        self.shared.lock_store().compact();
    }

    /// Waits until `pred` holds for the object (`None` when it does not exist), checking
    /// after every change to the store; returns the object as it was when `pred` held.
    pub async fn wait_for<K, F>(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        mut pred: F,
    ) -> Result<Option<K>, FakeApiServerError>
    where
        K: Resource + DeserializeOwned,
        F: FnMut(Option<&K>) -> bool,
    {
        let mut changes = self.shared.lock_store().rv_tx.subscribe();
        let check = async {
            loop {
                changes.borrow_and_update();
                let cur = self.try_get::<K>(namespace, name)?;
                if pred(cur.as_ref()) {
                    return Ok(cur);
                }
                if changes.changed().await.is_err() {
                    return Err(FakeApiServerError::Timeout {
                        what: format!("{} {namespace}/{name}: the store went away", K::KIND),
                        after: timeout,
                    });
                }
            }
        };
        tokio::time::timeout(timeout, check)
            .await
            .unwrap_or_else(|_| {
                Err(FakeApiServerError::Timeout {
                    what: format!("a condition on {} {namespace}/{name}", K::KIND),
                    after: timeout,
                })
            })
    }

    // ---- faults and the request log ----

    /// The next `count` requests matching `what` fail with `kind`.
    pub fn fail_next(&self, what: FaultMatch, count: usize, kind: FaultKind) {
        lock(&self.shared.faults).add(what, count, kind);
    }

    /// Forgets pending faults.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Ends every open watch (the response stream closes, as when the server's watch
    /// times out or an apiserver instance goes away behind a load balancer).
    pub fn drop_watches(&self) {
        self.shared.drop_watches.send_modify(|g| *g += 1);
    }

    /// Starts an outage: the listening socket is closed (connects are refused) and every
    /// open connection, watches included, is cut.
    pub fn start_outage(&self) {
        self.outage.send_replace(true);
        self.shared.cut.send_replace(true);
    }

    /// Ends an outage: the same address accepts connections again.
    pub fn end_outage(&self) {
        self.shared.cut.send_replace(false);
        self.outage.send_replace(false);
    }

    /// Every request so far, in order of completion (a watch when its response starts).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.shared.cut.send_replace(true);
        self.shared.drop_watches.send_modify(|g| *g += 1);
        if let Some(task) = lock(&self.accept).take() {
            task.abort();
        }
    }
}

/// 32 random hex characters (std's per-process random hasher keys as the entropy source).
pub(crate) fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(32);
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(jiff::Timestamp::now().as_nanosecond() as u128);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

async fn serve_connection<S>(shared: Arc<Shared>, stream: S, cert_user: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut cut = shared.cut.subscribe();
    if *cut.borrow_and_update() {
        return;
    }
    let svc_shared = shared.clone();
    let service = service_fn(move |req| routes::handle(svc_shared.clone(), cert_user.clone(), req));
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::trace!(error = %e, "fake apiserver connection ended");
            }
        }
        _ = cut.wait_for(|c| *c) => {}
    }
}
