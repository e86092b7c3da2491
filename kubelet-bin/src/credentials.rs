//! A look at the kubeconfig's client certificate before it reaches the TLS stack, so that a
//! certificate rustls cannot use is reported as what it is. Otherwise an X.509 v1
//! certificate (what a bare `openssl x509 -req` makes, and Go clients accept) surfaces as
//! "rustls tls error: invalid private key: invalid peer certificate: UnsupportedCertVersion".
//!
//! Only the client certificate is checked: rustls takes a v1 CA certificate as a trust
//! anchor (webpki reads its name and key from it), so a v1 `certificate-authority` works.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kube::config::{KubeConfigOptions, Kubeconfig};
use thiserror::Error;

/// A credential in the kubeconfig that the kubelet's TLS stack cannot use.
#[derive(Debug, Error)]
pub enum CredentialError {
    /// The client certificate is not X.509 v3.
    #[error(
        "kubeconfig {kubeconfig}: the client certificate ({from}) is an X.509 v{version} \
         certificate; rustls requires v3 — reissue it with extensions, e.g. \
         `openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 \
         -extfile <(printf 'keyUsage=critical,digitalSignature\\nextendedKeyUsage=clientAuth') \
         -out client.crt`"
    )]
    CertificateVersion {
        /// The kubeconfig file.
        kubeconfig: PathBuf,
        /// Where the certificate came from: its file, or `client-certificate-data`.
        from: String,
        /// The X.509 version found (1 or 2).
        version: u8,
    },
}

/// Checks the client certificate of the kubeconfig's current context. Whatever cannot be
/// read or parsed here is left alone: building the client reports it with kube-rs's own
/// message.
pub async fn check_kubeconfig(path: &Path) -> Result<(), CredentialError> {
    let Ok(file) = Kubeconfig::read_from(path) else {
        return Ok(());
    };
    let Ok(config) =
        kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await
    else {
        return Ok(());
    };
    let auth = &config.auth_info;
    // As kube-rs (and client-go) read it: the inline data wins over the file.
    let (pem, from) = if let Some(data) = &auth.client_certificate_data {
        let Ok(pem) = STANDARD.decode(data.trim()) else {
            return Ok(());
        };
        (pem, "client-certificate-data".to_string())
    } else if let Some(file) = &auth.client_certificate {
        // read_from made a relative path absolute against the kubeconfig's directory.
        let Ok(pem) = std::fs::read(file) else {
            return Ok(());
        };
        (pem, file.clone())
    } else {
        return Ok(());
    };
    // The first certificate is the client's own; the rest is a chain for the server to
    // verify, which rustls sends without parsing.
    let Some(der) = first_pem_certificate(&pem) else {
        return Ok(());
    };
    match x509_version(&der) {
        Some(version) if version < 3 => Err(CredentialError::CertificateVersion {
            kubeconfig: path.to_path_buf(),
            from,
            version,
        }),
        _ => Ok(()),
    }
}

/// The DER of the first `CERTIFICATE` block of a PEM text.
fn first_pem_certificate(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = text.find(begin)? + begin.len();
    let end = start + text[start..].find("-----END CERTIFICATE-----")?;
    let body: String = text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

/// The version (1, 2 or 3) of a DER X.509 certificate; `None` when it does not read as one.
/// Only the start of `TBSCertificate` is looked at: `version [0] EXPLICIT INTEGER DEFAULT
/// v1`, so an absent field (the serial number's INTEGER comes first) means v1.
fn x509_version(der: &[u8]) -> Option<u8> {
    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const EXPLICIT_0: u8 = 0xa0;
    let (certificate, _) = der_element(der, SEQUENCE)?;
    let (tbs, _) = der_element(certificate, SEQUENCE)?;
    match *tbs.first()? {
        EXPLICIT_0 => {
            let (explicit, _) = der_element(tbs, EXPLICIT_0)?;
            match der_element(explicit, INTEGER)? {
                ([v @ 0..=2], _) => Some(v + 1),
                _ => None,
            }
        }
        INTEGER => Some(1),
        _ => None,
    }
}

/// Splits one DER element with tag `tag` off `input`: (its contents, what follows).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits count the length octets (at most 4 for anything sane).
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (octets, rest) = rest.split_at(n);
        let len = octets
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 0x80 => out.push(n as u8),
            n if n < 0x100 => out.extend([0x81, n as u8]),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend_from_slice(content);
        out
    }

    /// A certificate-shaped DER: only what precedes the serial number matters here, the
    /// rest is padding that makes the lengths use the long form.
    fn cert(version: Option<u8>) -> Vec<u8> {
        let mut tbs = Vec::new();
        if let Some(v) = version {
            tbs.extend(element(0xa0, &element(0x02, &[v])));
        }
        tbs.extend(element(0x02, &[0x01, 0x23]));
        tbs.extend(element(0x30, &[0u8; 300]));
        let mut certificate = element(0x30, &tbs);
        certificate.extend(element(0x30, &[0u8; 10]));
        certificate.extend(element(0x03, &[0u8; 70]));
        element(0x30, &certificate)
    }

    #[test]
    fn versions_are_read_from_the_tbs_certificate() {
        assert_eq!(x509_version(&cert(None)), Some(1));
        assert_eq!(x509_version(&cert(Some(0))), Some(1));
        assert_eq!(x509_version(&cert(Some(1))), Some(2));
        assert_eq!(x509_version(&cert(Some(2))), Some(3));
        assert_eq!(x509_version(&cert(Some(7))), None);
        assert_eq!(x509_version(b"not DER"), None);
        let mut truncated = cert(Some(2));
        truncated.truncate(20);
        assert_eq!(x509_version(&truncated), None);
    }

    #[test]
    fn the_first_pem_certificate_is_decoded() {
        let der = cert(None);
        let pem = format!(
            "junk\n-----BEGIN CERTIFICATE-----\n{}\n{}\n-----END CERTIFICATE-----\n\
             -----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            &STANDARD.encode(&der)[..40],
            &STANDARD.encode(&der)[40..],
        );
        assert_eq!(first_pem_certificate(pem.as_bytes()), Some(der));
        assert_eq!(first_pem_certificate(b"no PEM here"), None);
    }
}
