//! Interoperability with a real, certified OpenID provider: the npm package `oidc-provider`,
//! configured for client credentials with JWT access tokens for the resource
//! `urn:passerelle`. `.ci/run` installs it and sets `PASSERELLE_INTEROP=required`; elsewhere the
//! test is skipped (with a message) when the package is not installed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::issuer::TestIssuer;
use crate::support::{TestServer, trust};

struct NodeProvider {
    child: Child,
    issuer: String,
}

impl Drop for NodeProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".ci/interop")
}

/// Starts oidc-provider on a free loopback port, or explains why it cannot.
fn start_provider() -> Option<NodeProvider> {
    let dir = interop_dir();
    let required = std::env::var("PASSERELLE_INTEROP").is_ok_and(|v| v == "required");
    if !dir.join("node_modules/oidc-provider").exists() {
        assert!(
            !required,
            "PASSERELLE_INTEROP=required but oidc-provider is not installed"
        );
        eprintln!(
            "skipped: run `npm ci` in .ci/interop (or .ci/run) to test against oidc-provider"
        );
        return None;
    }
    let mut child = Command::new("node")
        .arg("oidc-provider.mjs")
        .arg("0")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node is needed for the interoperability suite");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let issuer = line
        .trim()
        .strip_prefix("issuer ")
        .unwrap_or_else(|| panic!("unexpected output from oidc-provider: {line}"))
        .to_string();
    Some(NodeProvider { child, issuer })
}

#[tokio::test]
async fn client_credentials_token_from_oidc_provider_is_accepted_beside_a_second_issuer() {
    let Some(provider) = start_provider() else {
        return;
    };
    passerelle::install_crypto_provider();
    // A client-credentials token from the certified provider.
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{}/token", provider.issuer))
        .basic_auth(
            "caf-si-prestations",
            Some("interop-test-secret-not-a-real-one"),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", "urn:passerelle"),
            ("scope", "lookup"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access_token = token["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {token}"))
        .to_string();

    // The gateway trusts the provider and the in-test issuer at the same time.
    let second = TestIssuer::start().await;
    // Each is trusted for what it asserts (the provider: organisations; the in-test issuer:
    // research groups), so that no demo rule could be satisfied by both.
    let mut researchers = trust(&second.issuer());
    researchers.claims = vec!["groups".into()];
    let server = TestServer::start(vec![researchers, {
        // Its JWT access tokens are RFC 9068 `at+jwt`: only those are taken.
        let mut real =
            passerelle::config::IssuerConfig::new(provider.issuer.clone(), "urn:passerelle")
                .asserting("oidc-provider", &["organisation"]);
        real.require_typ = Some("at+jwt".into());
        real
    }])
    .await;
    server.wait_ready(Duration::from_secs(20)).await;

    let me = server.get("/v1/me", Some(&access_token)).await;
    assert_eq!(me.status(), 200);
    let body: serde_json::Value = me.json().await.unwrap();
    assert_eq!(body["principal"]["issuer"], provider.issuer);
    assert_eq!(body["principal"]["subject"], "caf-si-prestations");
    assert_eq!(body["principal"]["organisation_siret"], "13000170500016");
    assert_eq!(body["principal"]["client_id"], "caf-si-prestations");

    let from_second = server
        .get(
            "/v1/me",
            Some(&second.sign("ec-1", &second.claims("chercheur"))),
        )
        .await;
    assert_eq!(from_second.status(), 200);

    // The same token with its signature cut is refused.
    let truncated = &access_token[..access_token.len() - 4];
    assert_eq!(server.get("/v1/me", Some(truncated)).await.status(), 401);
}
