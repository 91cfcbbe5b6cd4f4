//! Interoperability with a real, certified OpenID provider: the npm package `oidc-provider`,
//! configured for client credentials with JWT access tokens for the resource
//! `urn:passerelle`, and for the console's sign-in (authorization code with PKCE). `.ci/run`
//! installs it and sets `PASSERELLE_INTEROP=required`; elsewhere the test is skipped (with a
//! message) when the package is not installed.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::flight::FlightClient;
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
    start_provider_for(None)
}

/// [`start_provider`], with the console's client when `console` (its base URL) is given.
fn start_provider_for(console: Option<&str>) -> Option<NodeProvider> {
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
        .args(console)
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
    let access_token = client_credentials_token(&provider).await;

    // The gateway trusts the provider and the in-test issuer at the same time.
    let second = TestIssuer::start().await;
    let server = TestServer::start(vec![researchers_of(&second), provider_issuer(&provider)]).await;
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

/// A client-credentials token of the provider's client `caf-si-prestations`.
async fn client_credentials_token(provider: &NodeProvider) -> String {
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/token", provider.issuer))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
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
    token["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {token}"))
        .to_string()
}

const CLIENT_ID: &str = "caf-si-prestations";
const CLIENT_SECRET: &str = "interop-test-secret-not-a-real-one";

/// The in-test issuer, trusted for research groups only, so that no demo rule could be
/// satisfied by both it and the provider.
fn researchers_of(second: &TestIssuer) -> passerelle::config::IssuerConfig {
    let mut researchers = trust(&second.issuer());
    researchers.claims = vec!["groups".into()];
    researchers
}

/// The provider, trusted for organisations; its JWT access tokens are RFC 9068 `at+jwt`: only
/// those are taken.
fn provider_issuer(provider: &NodeProvider) -> passerelle::config::IssuerConfig {
    let mut real = passerelle::config::IssuerConfig::new(provider.issuer.clone(), "urn:passerelle")
        .asserting("oidc-provider", &["organisation"]);
    real.require_typ = Some("at+jwt".into());
    real
}

/// ADBC's and JDBC's `username`/`password` over Flight SQL: the Handshake's `Basic
/// client_id:secret` is exchanged at the configured issuer (oidc-provider) with the
/// client-credentials grant, and the client gets that issuer's access token back as its bearer;
/// a wrong secret, or the same credentials on a gateway without the setting, are refused.
#[tokio::test]
async fn flight_handshake_exchanges_client_credentials_at_the_configured_issuer() {
    let Some(provider) = start_provider() else {
        return;
    };
    passerelle::install_crypto_provider();
    let second = TestIssuer::start().await;
    let mut config = crate::support::hub().config();
    config.identity.issuers = vec![researchers_of(&second), provider_issuer(&provider)];
    config.flight.listen = Some("127.0.0.1:0".parse().unwrap());
    config.flight.client_credentials = Some(passerelle::config::ClientCredentialsConfig {
        issuer: "oidc-provider".into(),
        resource: Some("urn:passerelle".into()),
        scope: Some("lookup".into()),
        max_concurrent: 4,
    });
    let server = TestServer::start_with(config.clone()).await;
    server.wait_ready(Duration::from_secs(20)).await;
    let flight = server.flight.unwrap();
    let ca = crate::support::hub().ca_pem();

    let mut client = FlightClient::connect_with_credentials(flight, &ca, CLIENT_ID, CLIENT_SECRET)
        .await
        .unwrap();
    let token = client.token().unwrap().to_string();
    assert_eq!(
        token.split('.').count(),
        3,
        "a JWT access token is handed back"
    );
    // The token is the provider's, for this client: the gateway takes it on HTTPS too.
    let me: serde_json::Value = server
        .get("/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["principal"]["issuer"], provider.issuer, "{me}");
    assert_eq!(me["principal"]["subject"], CLIENT_ID, "{me}");
    // And the Flight client carries on with it.
    client.catalogs().await.unwrap();

    // A wrong secret: refused, with the one answer for every refused credential.
    let wrong = FlightClient::connect_with_credentials(flight, &ca, CLIENT_ID, "not-the-secret")
        .await
        .err()
        .unwrap();
    assert!(wrong.contains("invalid_token"), "{wrong}");
    assert!(!wrong.contains("not-the-secret"), "{wrong}");
    // A client the issuer does not know: the same answer.
    let unknown = FlightClient::connect_with_credentials(flight, &ca, "personne", "x")
        .await
        .err()
        .unwrap();
    assert!(unknown.contains("invalid_token"), "{unknown}");
    // A bearer from the other trusted issuer still goes through the Handshake.
    let bearer = second.sign("ec-1", &second.claims("chercheur"));
    FlightClient::connect(flight, &ca, &bearer)
        .await
        .catalogs()
        .await
        .unwrap();
    adbc_connects_with_client_credentials(flight, &ca).await;
    drop(server);

    // The same credentials on a gateway without `[flight.client_credentials]`: Basic refused,
    // and the issuer is never asked.
    config.flight.client_credentials = None;
    let plain = TestServer::start_with(config).await;
    plain.wait_ready(Duration::from_secs(20)).await;
    let refused = FlightClient::connect_with_credentials(
        plain.flight.unwrap(),
        &ca,
        CLIENT_ID,
        CLIENT_SECRET,
    )
    .await
    .err()
    .unwrap();
    assert!(
        refused.contains("Basic credentials are not accepted"),
        "{refused}"
    );
}

/// ADBC's own Flight SQL driver with `username` and `password` (its Basic handshake) against
/// the gateway at `flight`: connected, it lists its catalogs; a wrong password is refused.
/// Skipped with a message when the Python clients are missing (required in CI).
async fn adbc_connects_with_client_credentials(flight: std::net::SocketAddr, ca: &[u8]) {
    let required = std::env::var("PASSERELLE_CLIENTS").is_ok_and(|v| v == "required");
    let script = r#"
import os, sys
import adbc_driver_flightsql.dbapi as flight_sql

def connect(password):
    return flight_sql.connect(os.environ["FLIGHT"], db_kwargs={
        "username": os.environ["CLIENT_ID"], "password": password,
        "adbc.flight.sql.client_option.tls_root_certs": open(os.environ["CA"]).read(),
    })

with connect(os.environ["CLIENT_SECRET"]) as conn:
    catalogs = conn.adbc_get_objects(depth="catalogs").read_all()
    print("catalogs", catalogs.column("catalog_name").to_pylist())
try:
    with connect("not-the-secret") as conn:
        conn.adbc_get_objects(depth="catalogs").read_all()
    sys.exit("a wrong secret was accepted")
except Exception as e:
    text = str(e)
    assert "not-the-secret" not in text, text
    assert "nauthenticated" in text or "invalid_token" in text, text
    print("refused", type(e).__name__)
"#;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let probe = std::process::Command::new("python3")
        .args(["-c", "import adbc_driver_flightsql"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            !required,
            "PASSERELLE_CLIENTS=required but adbc_driver_flightsql is missing"
        );
        eprintln!("skipped the ADBC part: pip install -r tests/clients/requirements.txt");
        return;
    }
    let output = tokio::process::Command::new("python3")
        .args(["-c", script])
        .env("FLIGHT", format!("grpc+tls://{flight}"))
        .env("CA", &ca_file)
        .env("CLIENT_ID", CLIENT_ID)
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "ADBC with client credentials:\n{text}"
    );
    assert!(text.contains("refused"), "{text}");
}

/// The console against the certified provider: an operator signs in through oidc-provider's
/// own login and consent pages (authorization code with PKCE, the resource `urn:passerelle`
/// for a JWT access token), the gateway validates its access token like any bearer and its ID
/// token with the provider's keys, and the console opens.
#[tokio::test]
async fn an_operator_signs_in_to_the_console_at_oidc_provider() {
    // The gateway's port, held until the provider has taken its own.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let base = format!("https://127.0.0.1:{port}");
    let Some(provider) = start_provider_for(Some(&base)) else {
        return;
    };
    drop(held);
    let (_dir, mut config) = crate::policy::private_hub();
    let mut issuer = provider_issuer(&provider);
    issuer.claims = vec!["organisation".into(), "roles".into()];
    config.identity.issuers = vec![issuer];
    config.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let mut console =
        passerelle::config::ConsoleConfig::new("oidc-provider", "passerelle-console", &base);
    console.resource = Some("urn:passerelle".into());
    config.console = Some(console);
    let gw = TestServer::start_with(config).await;
    gw.wait_ready(Duration::from_secs(10)).await;

    let mut browser = crate::console::Browser::new();
    let mut page = browser.get(&gw.url("/console/connexion")).await;
    // Follow the provider's redirects and submit its pages (login, then consent) until it
    // sends the browser back to the console.
    for _ in 0..20 {
        if page.status.is_redirection() {
            let location = page.location();
            let next = if location.starts_with('/') {
                format!("{}{location}", provider.issuer)
            } else {
                location
            };
            if next.starts_with(&gw.url("/console/callback")) {
                page = browser.get(&next).await;
                break;
            }
            page = browser.get(&next).await;
            continue;
        }
        assert_eq!(page.status, 200, "{}", page.body);
        let action = page
            .form_action()
            .expect("a page of the provider with a form");
        let mut fields = page.hidden_fields();
        if page.body.contains("name=\"login\"") {
            fields.push(("login".into(), "sophie-leroy".into()));
            fields.push(("password".into(), "any".into()));
        }
        let url = if action.starts_with('/') {
            format!("{}{action}", provider.issuer)
        } else {
            action
        };
        page = browser.post_owned(url, fields, false).await;
    }
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("url=/console"), "{}", page.body);
    let home = browser.get(&gw.url("/console")).await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains("Politique d"), "{}", home.body);
}
