//! The serving side of TLS: the certificate (given, or self-signed once and kept under the
//! certificate directory, as the reference does), `tlsMinVersion`, `tlsCipherSuites`, and a
//! client certificate request that leaves the verdict to the x509 authenticator.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName as TlsDn, SignatureScheme};

use super::ServerError;

/// File names of the self-signed pair under the certificate directory (the reference's
/// `--cert-dir`, `<root-dir>/pki`).
pub const SELF_SIGNED_CERT: &str = "kubelet.crt";
/// See [`SELF_SIGNED_CERT`].
pub const SELF_SIGNED_KEY: &str = "kubelet.key";
/// How long a self-signed serving certificate is valid (the reference's one year).
const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// TLS settings of the kubelet server.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `tlsCertFile`: PEM certificate chain, leaf first. With `key_file`, or neither.
    pub cert_file: Option<PathBuf>,
    /// `tlsPrivateKeyFile`: PEM private key.
    pub key_file: Option<PathBuf>,
    /// Where the self-signed pair is kept when no files are given (`<root-dir>/pki`).
    pub cert_dir: PathBuf,
    /// The node's hostname: the self-signed certificate's CN and first SAN.
    pub hostname: String,
    /// The node's IPs, added to the self-signed certificate's SANs.
    pub node_ips: Vec<IpAddr>,
    /// `tlsMinVersion` (`VersionTLS12`, `VersionTLS13`; empty: TLS 1.2).
    pub min_version: Option<String>,
    /// `tlsCipherSuites`, IANA names (empty: rustls' defaults).
    pub cipher_suites: Vec<String>,
}

/// The protocol versions `tlsMinVersion` allows. Go's names are accepted; TLS 1.0 and 1.1
/// mean "1.2 and up" here, since rustls implements neither (a warning says so).
pub fn protocol_versions(
    min_version: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, ServerError> {
    match min_version.unwrap_or("") {
        "" | "VersionTLS12" => Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]),
        "VersionTLS13" => Ok(vec![&rustls::version::TLS13]),
        old @ ("VersionTLS10" | "VersionTLS11") => {
            tracing::warn!(
                tls_min_version = old,
                "TLS 1.0 and 1.1 are not implemented (rustls); serving TLS 1.2 and up"
            );
            Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12])
        }
        other => Err(ServerError::Tls(format!(
            "tlsMinVersion {other:?} is not one of VersionTLS10, VersionTLS11, VersionTLS12, \
             VersionTLS13"
        ))),
    }
}

/// IANA names (and Go's aliases) of the suites rustls implements, with the rustls suite.
fn suite_by_name(name: &str) -> Option<rustls::SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// Suites Go knows (so a reference configuration may name them) that rustls does not
/// implement (CBC modes, RSA key exchange, RC4, 3DES).
fn known_but_unsupported(name: &str) -> bool {
    const GO_ONLY: &[&str] = &[
        "TLS_RSA_WITH_RC4_128_SHA",
        "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        "TLS_RSA_WITH_AES_256_CBC_SHA",
        "TLS_RSA_WITH_AES_128_CBC_SHA256",
        "TLS_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
        "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    ];
    GO_ONLY.contains(&name)
}

/// The cipher suites for `tlsCipherSuites`. As in Go, the list governs TLS 1.2; the TLS 1.3
/// suites stay enabled (Go does not let them be configured), so naming only TLS 1.3 suites
/// leaves TLS 1.2 without any. An unknown name is refused with the name.
pub fn cipher_suites(names: &[String]) -> Result<Vec<rustls::SupportedCipherSuite>, ServerError> {
    let defaults = rustls::crypto::ring::default_provider().cipher_suites;
    if names.is_empty() {
        return Ok(defaults);
    }
    let mut suites: Vec<rustls::SupportedCipherSuite> = defaults
        .iter()
        .copied()
        .filter(|s| s.version() == &rustls::version::TLS13)
        .collect();
    for name in names {
        match suite_by_name(name) {
            Some(suite) => {
                if !suites.contains(&suite) {
                    suites.push(suite);
                }
            }
            None if known_but_unsupported(name) => {
                return Err(ServerError::Tls(format!(
                    "tlsCipherSuites: {name} is not implemented by this kubelet's TLS stack \
                     (rustls implements only AEAD suites with ECDHE)"
                )));
            }
            None => {
                return Err(ServerError::Tls(format!(
                    "tlsCipherSuites: unknown cipher suite {name:?}"
                )));
            }
        }
    }
    Ok(suites)
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ServerError + '_ {
    move |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The serving certificate chain and key: the given files, else the self-signed pair under
/// `cert_dir`, generated on first use and reused afterwards (as the reference's
/// `kubelet.crt`/`kubelet.key`).
pub fn serving_certificate(
    options: &TlsOptions,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ServerError> {
    let (cert_file, key_file) = match (&options.cert_file, &options.key_file) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => {
            let cert = options.cert_dir.join(SELF_SIGNED_CERT);
            let key = options.cert_dir.join(SELF_SIGNED_KEY);
            if !(cert.is_file() && key.is_file()) {
                write_self_signed(options, &cert, &key)?;
            }
            (cert, key)
        }
        _ => {
            return Err(ServerError::Tls(
                "tlsCertFile and tlsPrivateKeyFile must be given together".to_string(),
            ));
        }
    };
    let chain = CertificateDer::pem_file_iter(&cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("{}: {e}", cert_file.display())))?;
    if chain.is_empty() {
        return Err(ServerError::Tls(format!(
            "{}: no certificate in the file",
            cert_file.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&key_file)
        .map_err(|e| ServerError::Tls(format!("{}: {e}", key_file.display())))?;
    Ok((chain, key))
}

/// Generates the reference's self-signed pair: a CA `<host>-ca@<unix time>` signing a
/// serving certificate `<host>@<unix time>` for the hostname (and here the node's IPs too),
/// valid a year; the certificate file holds the leaf then the CA.
fn write_self_signed(options: &TlsOptions, cert: &Path, key: &Path) -> Result<(), ServerError> {
    let rc = |e: rcgen::Error| ServerError::Tls(format!("self-signed certificate: {e}"));
    let host = if options.hostname.is_empty() {
        "localhost"
    } else {
        options.hostname.as_str()
    };
    let now = SystemTime::now();
    let unix = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let not_after = now + SELF_SIGNED_VALIDITY;

    let ca_key = KeyPair::generate().map_err(rc)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{host}-ca@{unix}"));
    ca.distinguished_name = dn;
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    ca.not_before = now.into();
    ca.not_after = not_after.into();
    let ca_cert = ca.self_signed(&ca_key).map_err(rc)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate().map_err(rc)?;
    let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{host}@{unix}"));
    leaf.distinguished_name = dn;
    let mut sans = vec![match host.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(host.try_into().map_err(rc)?),
    }];
    sans.extend(options.node_ips.iter().map(|ip| SanType::IpAddress(*ip)));
    leaf.subject_alt_names = sans;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now.into();
    leaf.not_after = not_after.into();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(rc)?;

    let dir = cert.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    fs::write(cert, format!("{}{}", leaf_cert.pem(), ca_cert.pem())).map_err(io_err(cert))?;
    write_private(key, &leaf_key.serialize_pem())?;
    tracing::info!(
        cert = %cert.display(),
        "generated a self-signed serving certificate (no tlsCertFile given)"
    );
    Ok(())
}

/// Writes a key readable by its owner only.
fn write_private(path: &Path, contents: &str) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(contents.as_bytes()).map_err(io_err(path))
}

/// Reads a PEM bundle of CA certificates (`clientCAFile`).
pub fn read_ca_bundle(path: &Path) -> Result<rustls::RootCertStore, ServerError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ServerError::Tls(format!("clientCAFile {}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ServerError::Tls(format!(
            "clientCAFile {}: no usable CA certificate",
            path.display()
        )));
    }
    Ok(roots)
}

/// Asks every client for a certificate and accepts any it proves to hold the key of, as Go's
/// `tls.RequestClientCert` does: whether the chain leads to the client CA is the x509
/// authenticator's question, so that a certificate from another CA is a 401, not a failed
/// handshake. The CA's subjects are offered as hints when there is a client CA.
#[derive(Debug)]
pub(crate) struct RequestClientCert {
    provider: Arc<CryptoProvider>,
    hints: Vec<TlsDn>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[TlsDn] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls server configuration: certificate, versions, suites, client certificate
/// request (hinting at `client_ca`'s subjects), HTTP/1.1.
pub fn server_config(
    options: &TlsOptions,
    client_ca: Option<&rustls::RootCertStore>,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: cipher_suites(&options.cipher_suites)?,
        ..rustls::crypto::ring::default_provider()
    });
    let versions = protocol_versions(options.min_version.as_deref())?;
    let (chain, key) = serving_certificate(options)?;
    let hints = client_ca.map(|roots| roots.subjects()).unwrap_or_default();
    let verifier = Arc::new(RequestClientCert {
        provider: provider.clone(),
        hints,
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| ServerError::Tls(format!("TLS versions and cipher suites: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| ServerError::Tls(format!("serving certificate: {e}")))?;
    // HTTP/1.1 only: the streaming endpoints upgrade connections, which HTTP/2 does not do.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_suite_names_map_and_unknown_ones_are_refused() {
        let suites = cipher_suites(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()])
            .expect("known suite");
        assert!(
            suites
                .iter()
                .any(|s| s.suite() == rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)
        );
        assert!(
            !suites
                .iter()
                .any(|s| s.suite() == rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)
        );
        let err = cipher_suites(&["TLS_BOGUS".to_string()]).expect_err("unknown");
        assert!(err.to_string().contains("TLS_BOGUS"), "{err}");
        let err = cipher_suites(&["TLS_RSA_WITH_AES_128_CBC_SHA".to_string()]).expect_err("CBC");
        assert!(
            err.to_string().contains("TLS_RSA_WITH_AES_128_CBC_SHA"),
            "{err}"
        );
    }

    #[test]
    fn min_version_names() {
        assert_eq!(
            protocol_versions(Some("VersionTLS13")).expect("1.3").len(),
            1
        );
        assert_eq!(protocol_versions(None).expect("default").len(), 2);
        let err = protocol_versions(Some("TLS12")).expect_err("bad name");
        assert!(err.to_string().contains("TLS12"), "{err}");
    }

    #[test]
    fn self_signed_pair_is_made_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = TlsOptions {
            cert_dir: dir.path().join("pki"),
            hostname: "node-1".into(),
            node_ips: vec!["10.0.0.5".parse().expect("ip")],
            ..Default::default()
        };
        let (chain, _) = serving_certificate(&options).expect("generated");
        assert_eq!(chain.len(), 2, "leaf and CA");
        let (again, _) = serving_certificate(&options).expect("reused");
        assert_eq!(chain, again);
        let (_, parsed) = x509_parser::parse_x509_certificate(&chain[0]).expect("x509");
        let cn = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(cn.starts_with("node-1@"), "{cn}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.path().join("pki").join(SELF_SIGNED_KEY))
                .expect("key")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
