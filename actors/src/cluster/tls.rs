//! TLS between nodes: every node presents a certificate signed by the cluster's CA and
//! accepts only peers that do the same (mutual TLS), so that the cluster port can cross a
//! network the operator does not trust. The cookie alone only names a cluster.

use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Where a node's TLS material is (PEM files).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// This node's certificate chain.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs every node's certificate.
    pub ca: PathBuf,
    /// The name every node's certificate carries (a DNS subject alternative name).
    pub server_name: String,
}

pub struct Tls {
    pub(super) acceptor: TlsAcceptor,
    pub(super) connector: TlsConnector,
    pub(super) name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("name", &self.name).finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Tls {
    /// Reads and checks the files; the error names the key at fault.
    pub fn load(f: &TlsFiles) -> Result<Tls, String> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&f.cert)
            .and_then(|i| i.collect::<Result<_, _>>())
            .map_err(|e| format!("`cluster.tls_cert`: {}: {e}", f.cert.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "`cluster.tls_cert`: {}: no certificate",
                f.cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&f.key)
            .map_err(|e| format!("`cluster.tls_key`: {}: {e}", f.key.display()))?;
        let mut roots = RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(&f.ca)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("`cluster.tls_ca`: {}: {e}", f.ca.display()))?;
        for ca in cas {
            roots
                .add(ca)
                .map_err(|e| format!("`cluster.tls_ca`: {}: {e}", f.ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!(
                "`cluster.tls_ca`: {}: no certificate",
                f.ca.display()
            ));
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| format!("`cluster.tls_ca`: {e}"))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| format!("`cluster.tls_key`: {e}"))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("`cluster.tls_key`: {e}"))?;
        let name = ServerName::try_from(f.server_name.clone())
            .map_err(|e| format!("`cluster.tls_server_name`: {:?}: {e}", f.server_name))?;
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            name,
        })
    }
}
