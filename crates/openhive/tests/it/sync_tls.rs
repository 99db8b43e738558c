//! TLS in the sync client: `https://` peer endpoints work, certificates are verified (a peer
//! behind a certificate nobody trusts is refused), and a CA file given in `[sync] ca_file`
//! is trusted. The peer here is a real instance behind a TLS-terminating proxy whose
//! certificate is issued, in the test, by a throwaway CA.

use crate::sync_util::*;
use openhive_sync::client::{ClientOptions, SyncClient};
use reqwest::StatusCode;
use std::net::SocketAddr;
use std::sync::Arc;

/// A throwaway CA and a certificate it issued for `localhost` and 127.0.0.1.
struct TestPki {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "OpenHive test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone(), ca.der().clone()],
        key: rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    }
}

/// A TLS-terminating proxy on `listener` in front of the plain HTTP server at `target`.
fn tls_proxy(listener: tokio::net::TcpListener, target: SocketAddr, pki: &TestPki) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(pki.chain.clone(), pki.key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return; // a client that refused our certificate
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_over_https_verifies_certificates_and_trusts_the_configured_ca() {
    let pki = pki();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();

    // B serves plain HTTP behind the TLS proxy, and advertises the proxy's https URL.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https_base = format!("https://localhost:{}", proxy.local_addr().unwrap().port());
    let b = {
        let public = https_base.clone();
        instance_with(move |c| c.server.public_url = Some(public)).await
    };
    tls_proxy(proxy, b.running.addr, &pki);
    let b_endpoint = format!("{https_base}/sync/v1");
    let b_id = b.running.state.identity.instance_id.clone();

    // The client: certificate checks on by default (the test CA is nobody's root), the
    // configured CA trusted.
    let plain = SyncClient::with_options(None, &ClientOptions::default()).unwrap();
    let err = plain.identity(&b_endpoint).await.unwrap_err().to_string();
    assert!(err.contains("certificate"), "{err}");
    let trusting = SyncClient::with_options(
        None,
        &ClientOptions {
            ca_file: Some(ca_file.clone()),
        },
    )
    .unwrap();
    let doc = trusting.identity(&b_endpoint).await.unwrap();
    assert_eq!(doc.instance_id, b_id);

    // An instance without the CA cannot reach B over https.
    let c = instance().await;
    let peer = add_peer(&c, "B", &b_endpoint_api(&b_endpoint), &[]).await;
    let (st, t) = post(
        &c,
        &format!("/sync/peers/{}/test", peer["id"].as_str().unwrap()),
        serde_json::json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["reachable"], false, "{t}");
    assert!(t["error"].as_str().unwrap().contains("certificate"), "{t}");

    // An instance configured with `[sync] ca_file` syncs with B over https.
    let a = {
        let ca = ca_file.clone();
        instance_with(move |c| c.sync.ca_file = Some(ca)).await
    };
    create_hive(&b, "tls").await;
    enable_group(&b, "tls").await;
    add_peer(&a, "B", &b_endpoint_api(&b_endpoint), &["tls"]).await;
    add_peer(&b, "A", &a, &["tls"]).await;
    let p = new_post(&b, "tls", "over https").await;
    wait_visible(&a, &format!("/posts/{p}")).await;
    let q = new_post(&a, "tls", "and back").await;
    wait_visible(&b, &format!("/posts/{q}")).await;
    let peers = get(&a, "/sync/peers").await;
    assert_eq!(
        peers["data"][0]["sync_endpoint"],
        b_endpoint.as_str(),
        "{peers}"
    );
}

/// An [`Api`] whose sync endpoint is `endpoint` (for `add_peer`, which takes the peer's
/// API base and appends `/sync/v1`).
fn b_endpoint_api(endpoint: &str) -> Base {
    Base(endpoint.trim_end_matches("/sync/v1").to_string())
}

struct Base(String);

impl Api for Base {
    fn base(&self) -> String {
        self.0.clone()
    }
}
