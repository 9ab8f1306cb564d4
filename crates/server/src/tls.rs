//! HTTPS: a self-signed certificate for a LAN station, and serving with rustls.
//!
//! Why: WebUSB works only in a secure context. `localhost` is one, so a station running the
//! server itself needs no certificate; a station reaching the server across the factory LAN
//! needs https. `imprint init` makes a self-signed certificate for `localhost`, `127.0.0.1` and
//! any `--tls-name`; the station's browser trusts it once (or the operator installs a
//! certificate from the company's own CA under the same file names).

use std::net::SocketAddr;
use std::path::Path;

use crate::error::AppError;

/// File names in the data folder.
pub const CERT_FILE: &str = "tls.crt";
/// The private key's file name.
pub const KEY_FILE: &str = "tls.key";

/// Writes a self-signed certificate and its key (mode 0600) into `dir`.
pub fn create_self_signed(dir: &Path, names: &[String]) -> Result<(), AppError> {
    let mut all = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    all.extend(names.iter().cloned());
    let ck = rcgen::generate_simple_self_signed(all)
        .map_err(|e| AppError::Config(format!("cannot make a TLS certificate: {e}")))?;
    std::fs::write(dir.join(CERT_FILE), ck.cert.pem())
        .map_err(|e| AppError::Config(format!("cannot write {CERT_FILE}: {e}")))?;
    crate::kek::write_private(
        &dir.join(KEY_FILE),
        ck.signing_key.serialize_pem().as_bytes(),
    )
}

/// Serves `app` over https with the certificate in `dir`.
pub async fn serve(app: axum::Router, addr: SocketAddr, dir: &Path) -> Result<(), AppError> {
    let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(
        dir.join(CERT_FILE),
        dir.join(KEY_FILE),
    )
    .await
    .map_err(|e| {
        AppError::Config(format!(
            "cannot load {CERT_FILE}/{KEY_FILE} from {}: {e}",
            dir.display()
        ))
    })?;
    axum_server::bind_rustls(addr, config)
        .serve(app.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .map_err(|e| AppError::Config(format!("cannot serve https on {addr}: {e}")))
}
