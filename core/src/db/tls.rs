//! TLS to PostgreSQL: `DB_SSLMODE` and `DB_SSLROOTCERT`, with libpq's meanings.
//!
//! | mode | encrypted | server certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | – |
//! | `prefer` | if the server offers it | no |
//! | `require` | always | no |
//! | `verify-full` | always | chain against `DB_SSLROOTCERT`, and the host name |

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// `DB_SSLMODE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, without checking its certificate.
    Prefer,
    /// TLS or nothing, without checking the certificate.
    Require,
    /// TLS with the certificate checked against `DB_SSLROOTCERT` and the host name.
    VerifyFull,
}

impl SslMode {
    /// Parses a `DB_SSLMODE` value.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-full" => Ok(SslMode::VerifyFull),
            _ => Err("must be disable, prefer, require or verify-full".into()),
        }
    }

    /// What tokio-postgres is told to do.
    pub(crate) fn pg(self) -> PgSslMode {
        match self {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => PgSslMode::Require,
        }
    }
}

/// How connections are secured: the mode, and for `verify-full` the CA bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `DB_SSLMODE`.
    pub mode: SslMode,
    /// `DB_SSLROOTCERT`: PEM file of the certificate authorities to trust.
    pub root_cert: Option<PathBuf>,
}

/// Builds the TLS connector for `settings`; fails if the CA bundle cannot be read.
pub(crate) fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let config = match settings.mode {
        SslMode::VerifyFull => {
            let path = settings
                .root_cert
                .as_deref()
                .ok_or("verify-full needs DB_SSLROOTCERT")?;
            builder.with_root_certificates(roots(path)?).with_no_client_auth()
        }
        // libpq's prefer and require encrypt without authenticating the server.
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{} holds no usable CA certificate", path.display()));
    }
    Ok(store)
}

/// Accepts any server certificate but still checks the handshake signatures,
/// which is what `sslmode=require` means.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
