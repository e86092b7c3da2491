//! The envtest PKI, generated in-process: a CA, the API server's serving certificate, client
//! certificates (users as kube-apiserver's x509 authenticator reads them: CN is the user, O
//! the groups) and the service-account signing key pair. Every certificate is X.509 v3
//! (rcgen writes nothing else), which rustls requires.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::EnvtestError;
use crate::testing::apiserver::new_ca;

/// A certificate and its private key, both PEM (the key PKCS#8).
#[derive(Clone)]
pub(crate) struct CertAndKey {
    pub(crate) cert_pem: String,
    pub(crate) cert_der: Vec<u8>,
    pub(crate) key_pem: String,
    pub(crate) key_der: Vec<u8>,
}

/// The files kube-apiserver is started with, under the PKI directory.
pub(crate) struct PkiFiles {
    pub(crate) ca_cert: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) sa_pub: PathBuf,
    pub(crate) sa_key: PathBuf,
    pub(crate) kubelet_client_cert: PathBuf,
    pub(crate) kubelet_client_key: PathBuf,
}

/// The CA (kept to issue more client certificates) and what was issued at start.
pub(crate) struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub(crate) ca_pem: String,
    pub(crate) ca_der: Vec<u8>,
    pub(crate) admin: CertAndKey,
    pub(crate) files: PkiFiles,
}

fn pki_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> EnvtestError {
    move |e| EnvtestError::Pki {
        what,
        message: e.to_string(),
    }
}

fn write(path: &Path, contents: &str) -> Result<(), EnvtestError> {
    fs::write(path, contents).map_err(|source| EnvtestError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The names the serving certificate covers: loopback, where the tests connect, and the
/// in-cluster names a pod would use for the `kubernetes` Service (first IP of the range).
const SERVING_NAMES: &[&str] = &[
    "127.0.0.1",
    "localhost",
    "10.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

impl Pki {
    /// Generates everything and writes the files kube-apiserver reads into `dir` (which
    /// must exist; it lives in the harness's private temp dir, so the keys are not exposed).
    pub(crate) fn generate(dir: &Path) -> Result<Self, EnvtestError> {
        let (ca_cert, issuer) = new_ca("kubelet-envtest-ca").map_err(pki_err("CA"))?;
        let ca_pem = ca_cert.pem();
        let ca_der = ca_cert.der().to_vec();

        let server_key = KeyPair::generate().map_err(pki_err("serving key"))?;
        let mut sp = CertificateParams::new(
            SERVING_NAMES
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
        .map_err(pki_err("serving params"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        sp.distinguished_name = dn;
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let server_cert = sp
            .signed_by(&server_key, &issuer)
            .map_err(pki_err("serving certificate"))?;

        // ECDSA P-256 in PKCS#8: kube-apiserver's key parsing (keyutil) takes it for both
        // --service-account-key-file and --service-account-signing-key-file, and signs ES256.
        let sa_key = KeyPair::generate().map_err(pki_err("service-account key"))?;

        let mut pki = Self {
            issuer,
            ca_pem,
            ca_der,
            admin: CertAndKey {
                cert_pem: String::new(),
                cert_der: Vec::new(),
                key_pem: String::new(),
                key_der: Vec::new(),
            },
            files: PkiFiles {
                ca_cert: dir.join("ca.crt"),
                server_cert: dir.join("server.crt"),
                server_key: dir.join("server.key"),
                sa_pub: dir.join("sa.pub"),
                sa_key: dir.join("sa.key"),
                kubelet_client_cert: dir.join("apiserver-kubelet-client.crt"),
                kubelet_client_key: dir.join("apiserver-kubelet-client.key"),
            },
        };
        pki.admin = pki.issue_client("kubelet-envtest-admin", &["system:masters"])?;
        // What the API server presents to kubelets (logs, exec, port-forward, node proxy).
        let kubelet_client =
            pki.issue_client("kube-apiserver-kubelet-client", &["system:masters"])?;

        let f = &pki.files;
        write(&f.ca_cert, &pki.ca_pem)?;
        write(&f.server_cert, &server_cert.pem())?;
        write(&f.server_key, &server_key.serialize_pem())?;
        write(&f.sa_pub, &sa_key.public_key_pem())?;
        write(&f.sa_key, &sa_key.serialize_pem())?;
        write(&f.kubelet_client_cert, &kubelet_client.cert_pem)?;
        write(&f.kubelet_client_key, &kubelet_client.key_pem)?;
        // Handy for poking at a kept server with curl or kubectl.
        write(&dir.join("admin.crt"), &pki.admin.cert_pem)?;
        write(&dir.join("admin.key"), &pki.admin.key_pem)?;
        Ok(pki)
    }

    /// A new client certificate for `user` in `groups` (at most one: rcgen's distinguished
    /// names hold one value per attribute type, so a second O would replace the first).
    pub(crate) fn issue_client(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<CertAndKey, EnvtestError> {
        if groups.len() > 1 {
            return Err(EnvtestError::Pki {
                what: "client certificate",
                message: format!(
                    "{user}: one group at most can be put in a certificate here, got {groups:?}"
                ),
            });
        }
        let key = KeyPair::generate().map_err(pki_err("client key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(pki_err("client params"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        for g in groups {
            dn.push(DnType::OrganizationName, *g);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(pki_err("client certificate"))?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    }
}
