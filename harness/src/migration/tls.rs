//! Migration over TLS: x509 credentials made for one run (a CA, a server
//! certificate for the destination, a client certificate for the source, both
//! naming the address the source connects to), written into the run directory and
//! loaded into the two QEMUs with `object-add` of `tls-creds-x509`, verify-peer on
//! at both ends. The migration parameters that point at them are in
//! `settings::tls_parameters`.

use super::measurement::Outcome;
use super::scenario::{Scenario, Transport};
use crate::machine::Machine;
use crate::qmp::QmpError;
use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::json;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The id of the `tls-creds-x509` object on both QEMUs (`tls-creds`).
pub const TLS_CREDS_ID: &str = "migbench-tls";

/// The name the source checks the destination's certificate against
/// (`tls-hostname`): the address it connects to, or a name for a unix socket,
/// which has none.
pub fn hostname(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "127.0.0.1",
        Transport::Unix => "localhost",
    }
}

/// The destination's certificate names every address a source may use.
const SERVER_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// The two directories QEMU reads, in its own layout (`ca-cert.pem`,
/// `server-cert.pem` / `server-key.pem`, `client-cert.pem` / `client-key.pem`).
#[derive(Debug, Clone)]
pub struct RunCredentials {
    pub server_dir: PathBuf,
    pub client_dir: PathBuf,
}

/// One certificate authority of a run.
struct Authority {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn authority(name: &str) -> Result<Authority, rcgen::Error> {
    let mut params = validity(CertificateParams::new(Vec::<String>::new())?);
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let pem = params.self_signed(&key)?.pem();
    Ok(Authority { pem, issuer: Issuer::new(params, key) })
}

/// A leaf certificate and its key, signed by `ca`.
fn leaf(ca: &Authority, name: &str, sans: &[&str], purpose: ExtendedKeyUsagePurpose) -> Result<(String, String), rcgen::Error> {
    let mut params = validity(CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())?);
    params.distinguished_name.push(DnType::CommonName, name);
    // QEMU refuses a certificate whose (critical) key usage lacks either of these.
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![purpose];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Valid from a year ago to two years on: a host clock a little off does not matter.
fn validity(mut p: CertificateParams) -> CertificateParams {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let year = 1970 + (secs / 31_556_952) as i32;
    p.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    p.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
    p
}

/// A file only its owner may read (private keys), made so from the start.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Makes a run's credentials under `dir` (`dir/server`, `dir/client`). With
/// `wrong_ca`, the client's CA and certificate come from another authority than
/// the server's: each side must then refuse the other.
pub fn generate(dir: &Path, wrong_ca: bool) -> Result<RunCredentials> {
    let failed = |what: &str, e: rcgen::Error| anyhow::anyhow!("generating the run's TLS {what}: {e}");
    let ca = authority("migbench run CA").map_err(|e| failed("CA", e))?;
    let other = if wrong_ca { Some(authority("migbench other CA").map_err(|e| failed("second CA", e))?) } else { None };
    let client_ca = other.as_ref().unwrap_or(&ca);
    let (server_cert, server_key) = leaf(&ca, "migbench destination", &SERVER_NAMES, ExtendedKeyUsagePurpose::ServerAuth).map_err(|e| failed("server certificate", e))?;
    let (client_cert, client_key) = leaf(client_ca, "migbench source", &[], ExtendedKeyUsagePurpose::ClientAuth).map_err(|e| failed("client certificate", e))?;

    let creds = RunCredentials { server_dir: dir.join("server"), client_dir: dir.join("client") };
    for d in [&creds.server_dir, &creds.client_dir] {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let public = |path: PathBuf, pem: &str| std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()));
    public(creds.server_dir.join("ca-cert.pem"), &ca.pem)?;
    public(creds.server_dir.join("server-cert.pem"), &server_cert)?;
    write_private(&creds.server_dir.join("server-key.pem"), &server_key)?;
    public(creds.client_dir.join("ca-cert.pem"), &client_ca.pem)?;
    public(creds.client_dir.join("client-cert.pem"), &client_cert)?;
    write_private(&creds.client_dir.join("client-key.pem"), &client_key)?;
    Ok(creds)
}

/// The `object-add` arguments of one side's credentials.
pub fn object_args(endpoint: &str, dir: &Path) -> serde_json::Value {
    json!({"qom-type": "tls-creds-x509", "id": TLS_CREDS_ID, "endpoint": endpoint, "dir": dir.display().to_string(), "verify-peer": true})
}

/// For a TLS scenario: makes the run's credentials in the destination's directory
/// and loads them into both QEMUs (the destination as the server). `Ok(Err(_))`:
/// a QEMU refused them, recorded as the run's outcome; nothing was migrated.
pub(crate) async fn prepare(src: &Machine, dst: &Machine, scenario: &Scenario) -> Result<Result<(), Outcome>> {
    if !scenario.tls {
        return Ok(Ok(()));
    }
    for (m, side) in [(src, "source"), (dst, "destination")] {
        let f = m.features().await?;
        let lacks = ["object-add", "object-del", "qom-get"].into_iter().find(|c| !f.commands.contains(*c)).map(|c| format!("the QMP command {c}"));
        if let Some(what) = lacks.or_else(|| (!f.has_parameter("tls-creds")).then(|| "the migration parameter tls-creds".to_string())) {
            let version = &m.emulator.qemu.version;
            return Ok(Err(Outcome::Unsupported { reason: format!("unsupported on QEMU {version} ({side}): migration over TLS needs {what}") }));
        }
    }
    let creds = generate(&dst.paths.dir.join("tls"), scenario.tls_wrong_ca)?;
    for (m, side, endpoint, dir) in [(dst, "destination", "server", &creds.server_dir), (src, "source", "client", &creds.client_dir)] {
        let version = &m.emulator.qemu.version;
        // A reused guest's QEMU may hold an earlier run's credentials under this id.
        let _ = m.qmp.execute_json("object-del", json!({"id": TLS_CREDS_ID})).await;
        match m.qmp.execute_json("object-add", object_args(endpoint, dir)).await {
            Ok(_) => {}
            // The schema has it: a refusal is of these credentials, a failure of the run.
            Err(e @ QmpError::Command { .. }) => {
                return Ok(Err(Outcome::Failed { reason: format!("QEMU {version} on the {side} refused the run's TLS credentials ({endpoint}, {}): {e}", dir.display()) }));
            }
            Err(other) => return Err(anyhow::Error::new(other)),
        }
        // verify-peer read back: each end checks the other's certificate.
        let path = format!("/objects/{TLS_CREDS_ID}");
        let verify = m.qmp.execute_json("qom-get", json!({"path": path, "property": "verify-peer"})).await?;
        if verify != json!(true) {
            return Ok(Err(Outcome::Failed { reason: format!("QEMU {version} on the {side} reads verify-peer back as {verify}, not true") }));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_are_written_in_qemus_layout_with_private_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let c = generate(&tmp.path().join("tls"), false).unwrap();
        for (dir, files) in [(&c.server_dir, ["ca-cert.pem", "server-cert.pem", "server-key.pem"]), (&c.client_dir, ["ca-cert.pem", "client-cert.pem", "client-key.pem"])] {
            assert_eq!(std::fs::metadata(dir).unwrap().permissions().mode() & 0o777, 0o700, "{}", dir.display());
            for f in files {
                let text = std::fs::read_to_string(dir.join(f)).unwrap();
                assert!(text.starts_with("-----BEGIN "), "{f}: {text}");
                let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
                if f.ends_with("-key.pem") {
                    assert_eq!(mode, 0o600, "{f}");
                    assert!(text.contains("PRIVATE KEY"), "{f}");
                } else {
                    assert!(text.contains("CERTIFICATE"), "{f}");
                }
            }
        }
        // One CA for both, and a second run's CA is another.
        let ca = |d: &Path| std::fs::read_to_string(d.join("ca-cert.pem")).unwrap();
        assert_eq!(ca(&c.server_dir), ca(&c.client_dir));
        let again = generate(&tmp.path().join("again"), false).unwrap();
        assert_ne!(ca(&again.server_dir), ca(&c.server_dir));
        let wrong = generate(&tmp.path().join("wrong"), true).unwrap();
        assert_ne!(ca(&wrong.server_dir), ca(&wrong.client_dir));
        // Existing keys are never overwritten.
        assert!(generate(&tmp.path().join("tls"), false).is_err());
    }

    #[test]
    fn the_certificates_name_the_address_and_verify_with_openssl() {
        // An independent reader of the certificates (Debian installs it by default).
        let openssl = which("openssl").expect("this test reads the certificates with openssl: apt-get install openssl");
        let tmp = tempfile::tempdir().unwrap();
        let c = generate(tmp.path(), false).unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new(&openssl).args(args).output().unwrap();
            (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
        };
        let p = |d: &Path, f: &str| d.join(f).display().to_string();
        let (ok, text) = run(&["x509", "-noout", "-text", "-in", &p(&c.server_dir, "server-cert.pem")]);
        assert!(ok && text.contains("IP Address:127.0.0.1") && text.contains("DNS:localhost") && text.contains("TLS Web Server Authentication"), "{text}");
        let (ok, text) = run(&["verify", "-CAfile", &p(&c.server_dir, "ca-cert.pem"), &p(&c.client_dir, "client-cert.pem")]);
        assert!(ok, "{text}");
        let wrong = generate(&tmp.path().join("wrong"), true).unwrap();
        let (ok, text) = run(&["verify", "-CAfile", &p(&wrong.server_dir, "ca-cert.pem"), &p(&wrong.client_dir, "client-cert.pem")]);
        assert!(!ok, "a client certificate of another CA must not verify: {text}");
    }

    fn which(name: &str) -> Result<PathBuf, ()> {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file())).ok_or(())
    }

    #[test]
    fn object_add_names_the_endpoint_and_turns_verify_peer_on() {
        let a = object_args("server", Path::new("/run/x/tls/server"));
        assert_eq!(a, json!({"qom-type": "tls-creds-x509", "id": "migbench-tls", "endpoint": "server", "dir": "/run/x/tls/server", "verify-peer": true}));
        assert_eq!(hostname(Transport::Tcp), "127.0.0.1");
        assert!(SERVER_NAMES.contains(&hostname(Transport::Unix)) && SERVER_NAMES.contains(&hostname(Transport::Tcp)));
    }
}
