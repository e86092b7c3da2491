//! A CA generated at start, the server certificate for 127.0.0.1/localhost, and client
//! certificates issued to tests (users identified as by kube-apiserver's x509 authenticator:
//! CN is the user, O the groups).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto::ring};

use super::FakeApiServerError;

/// The fake's PKI.
pub(crate) struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub(crate) ca_pem: String,
    pub(crate) server_config: Arc<ServerConfig>,
    /// DER of each issued client certificate -> user name.
    issued: Mutex<HashMap<Vec<u8>, String>>,
}

fn tls_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> FakeApiServerError {
    move |e| FakeApiServerError::Tls {
        what,
        message: e.to_string(),
    }
}

/// A self-signed CA (X.509 v3, as rustls requires) and the issuer that signs with it.
pub(crate) fn new_ca(
    common_name: &str,
) -> Result<(rcgen::Certificate, Issuer<'static, KeyPair>), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok((cert, Issuer::new(params, key)))
}

impl Pki {
    pub(crate) fn generate() -> Result<Self, FakeApiServerError> {
        let (ca_cert, issuer) = new_ca("fake-kube-apiserver-ca").map_err(tls_err("CA"))?;
        let ca_pem = ca_cert.pem();

        let server_key = KeyPair::generate().map_err(tls_err("server key"))?;
        let mut sp = CertificateParams::new(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default.svc".to_string(),
        ])
        .map_err(tls_err("server params"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        sp.distinguished_name = dn;
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = sp
            .signed_by(&server_key, &issuer)
            .map_err(tls_err("server certificate"))?;

        let provider = Arc::new(ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(ca_cert.der().clone())
            .map_err(|e| FakeApiServerError::Tls {
                what: "client CA roots",
                message: e.to_string(),
            })?;
        // Client certificates are optional: bearer tokens authenticate too.
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| FakeApiServerError::Tls {
                    what: "client verifier",
                    message: e.to_string(),
                })?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FakeApiServerError::Tls {
                what: "protocol versions",
                message: e.to_string(),
            })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![server_cert.der().clone(), ca_cert.der().clone()],
                key_der,
            )
            .map_err(|e| FakeApiServerError::Tls {
                what: "server certificate",
                message: e.to_string(),
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            issuer,
            ca_pem,
            server_config: Arc::new(config),
            issued: Mutex::new(HashMap::new()),
        })
    }

    /// Issues a client certificate for `user` in `groups`; returns (cert PEM, key PEM).
    pub(crate) fn issue_client(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<(String, String), FakeApiServerError> {
        let key = KeyPair::generate().map_err(tls_err("client key"))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(tls_err("client params"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, user);
        for g in groups {
            dn.push(DnType::OrganizationName, *g);
        }
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(tls_err("client certificate"))?;
        if let Ok(mut issued) = self.issued.lock() {
            issued.insert(cert.der().to_vec(), user.to_string());
        }
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The user of a verified client certificate we issued.
    pub(crate) fn user_of(&self, cert: &CertificateDer<'_>) -> Option<String> {
        self.issued.lock().ok()?.get(cert.as_ref()).cloned()
    }
}
