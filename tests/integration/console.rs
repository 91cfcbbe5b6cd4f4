//! The operators' console in the browser, driven as a browser would (cookies, forms, redirects
//! followed by hand), against the development issuer's sign-in: the edit → dry run → apply →
//! rollback loop, and its attacks (a researcher at the console, forms without or with a wrong
//! token, from another site, a replayed or foreign sign-in, open redirects after sign-in).

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use crate::support::{TestServer, hub};

/// A browser: its own cookie jar, no automatic redirects.
pub(crate) struct Browser {
    client: reqwest::Client,
    cookies: HashMap<String, String>,
}

/// One answer, read whole.
pub(crate) struct Page {
    pub status: StatusCode,
    headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The `action` of the page's first form.
    pub fn form_action(&self) -> Option<String> {
        let start = self.body.find("<form")?;
        let tag = &self.body[start..start + self.body[start..].find('>')?];
        let at = tag.find("action=\"")? + "action=\"".len();
        let end = tag[at..].find('"')?;
        Some(tag[at..at + end].replace("&amp;", "&"))
    }

    /// Every hidden input of the page, by name.
    pub fn hidden_fields(&self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for input in self.body.split("<input").skip(1) {
            let tag = &input[..input.find('>').unwrap_or(input.len())];
            if !tag.contains("type=\"hidden\"") {
                continue;
            }
            let value_of = |attr: &str| -> Option<String> {
                let at = tag.find(&format!("{attr}=\""))? + attr.len() + 2;
                let end = tag[at..].find('"')?;
                Some(tag[at..at + end].to_string())
            };
            if let (Some(name), Some(value)) = (value_of("name"), value_of("value")) {
                fields.push((name, value));
            }
        }
        fields
    }

    pub fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    /// The value of the first hidden input `name`.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap();
        self.body[start..start + end].to_string()
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }
}

impl Browser {
    pub fn new() -> Self {
        passerelle::install_crypto_provider();
        Self {
            client: reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&hub().ca_pem()).unwrap())
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn read(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = if self.cookies.is_empty() {
            request
        } else {
            request.header(reqwest::header::COOKIE, self.cookie_header())
        };
        let r = request.send().await.unwrap();
        let page = Page {
            status: r.status(),
            headers: r.headers().clone(),
            body: String::new(),
        };
        for cookie in page.set_cookies() {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || cookie.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        Page {
            body: r.text().await.unwrap(),
            ..page
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let request = self.client.get(url);
        self.read(request).await
    }

    async fn post(&mut self, url: &str, form: &[(&str, &str)], same_origin: bool) -> Page {
        let mut request = self.client.post(url).form(form);
        if same_origin {
            request = request.header("sec-fetch-site", "same-origin");
        }
        self.read(request).await
    }

    pub async fn post_owned(
        &mut self,
        url: String,
        form: Vec<(String, String)>,
        same_origin: bool,
    ) -> Page {
        let refs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.post(&url, &refs, same_origin).await
    }

    /// Signs in as `persona` from `start` (a console URL): the sign-in page of the issuer, the
    /// persona's button, the callback; the callback's page.
    async fn sign_in(&mut self, gateway: &TestServer, start: &str, persona: &str) -> Page {
        self.sign_in_across(gateway, gateway, start, persona).await
    }

    /// [`Self::sign_in`] started at `gateway` and called back at `callback_at`, the gateway
    /// the console's public URL names (two gateways behind one balancer).
    async fn sign_in_across(
        &mut self,
        gateway: &TestServer,
        callback_at: &TestServer,
        start: &str,
        persona: &str,
    ) -> Page {
        let to_issuer = self.get(&gateway.url(start)).await;
        assert_eq!(
            to_issuer.status,
            StatusCode::SEE_OTHER,
            "{}",
            to_issuer.body
        );
        let authorize = to_issuer.location();
        assert!(
            authorize.contains("code_challenge_method=S256"),
            "{authorize}"
        );
        // The issuer's page lists the personas; its form posts the request back with one.
        let login = self.get(&authorize).await;
        assert_eq!(login.status, 200);
        assert!(
            login.body.contains(&format!("value=\"{persona}\"")),
            "{}",
            login.body
        );
        let url = url::Url::parse(&authorize).unwrap();
        let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        form.push(("persona".into(), persona.into()));
        let issuer = format!("{}://{}", url.scheme(), url.host_str().unwrap());
        let issuer = format!("{issuer}:{}", url.port().unwrap());
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let back = self
            .post(&format!("{issuer}/authorize"), &pairs, false)
            .await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        let callback = back.location();
        let area = if start.starts_with("/moi") {
            "/moi"
        } else {
            "/console"
        };
        assert!(
            callback.starts_with(&callback_at.url(&format!("{area}/callback?"))),
            "{callback}"
        );
        self.get(&callback).await
    }
}

/// A private hub (its policy changes) whose console signs in with the development issuer.
async fn console_hub() -> (tempfile::TempDir, passerelle::demo::DevIssuer, TestServer) {
    console_hub_with(|_| {}).await
}

/// [`console_hub`] with `tune` applied to its configuration.
async fn console_hub_with(
    tune: impl FnOnce(&mut passerelle::config::Config),
) -> (tempfile::TempDir, passerelle::demo::DevIssuer, TestServer) {
    let (dir, dev, mut config) = console_hub_config().await;
    tune(&mut config);
    let server = TestServer::start_with(config).await;
    server.wait_ready(Duration::from_secs(10)).await;
    (dir, dev, server)
}

/// A private hub's configuration whose console signs in with the development issuer, on a
/// listener of its own (a free port: the redirect URI names it).
async fn console_hub_config() -> (
    tempfile::TempDir,
    passerelle::demo::DevIssuer,
    passerelle::config::Config,
) {
    let (dir, mut config) = crate::policy::private_hub();
    let dev = passerelle::demo::DevIssuer::start().await.unwrap();
    dev.set_citizen_nir(&crate::support::allocataire_nirs(1)[0]);
    config.identity.issuers = vec![dev.issuer_config()];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config.server.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.console = Some(dev.console_config(&format!("https://127.0.0.1:{port}")));
    (dir, dev, config)
}

/// The number in the first `/console/versions/{n}/vigueur` of a page.
fn version_number(body: &str) -> u64 {
    let marker = "action=\"/console/versions/";
    let start = body.find(marker).unwrap() + marker.len();
    let end = body[start..].find('/').unwrap();
    body[start..start + end].parse().unwrap()
}

/// An operator completes the whole loop in the console: sign in, read the policy in force,
/// edit a version with a mistake and see it at its line, fix it, read the access delta, apply
/// it (confirmed), roll back to the version before, sign out. Every page carries the strict
/// headers; the session cookie its flags.
#[tokio::test]
async fn an_operator_edits_dry_runs_applies_and_rolls_back_in_the_console() {
    let (_dir, _dev, gw) = console_hub().await;
    let mut b = Browser::new();

    // Not signed in: the console sends to the sign-in, and comes back where it was asked.
    let first = b.get(&gw.url("/console/versions")).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(
        first.location(),
        "/console/connexion?retour=/console/versions"
    );
    let signed_in = b
        .sign_in(
            &gw,
            "/console/connexion?retour=/console/versions",
            "operateur",
        )
        .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert!(
        signed_in.body.contains("url=/console/versions"),
        "{}",
        signed_in.body
    );
    let session = signed_in
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("__Host-passerelle-session="))
        .expect("a session cookie");
    for flag in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(flag), "{session}");
    }
    assert!(!session.contains("Domain"), "{session}");

    // The policy in force, with the strict headers.
    let home = b.get(&gw.url("/console")).await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(
        home.body.contains("Politique d&#39;accès en vigueur")
            || home.body.contains("Politique d'accès en vigueur"),
        "{}",
        home.body
    );
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(home.headers["cache-control"], "no-store");
    assert!(!home.body.contains("<script"), "no script on any page");

    // The editor, filled with the set in force; a mistake is shown at its file and line.
    let editor = b.get(&gw.url("/console/versions/nouvelle")).await;
    assert_eq!(editor.status, 200);
    let csrf = editor.hidden("csrf");
    let texts = {
        let set = passerelle::policy::PolicySet::load(&_dir.path().join("hub/policies")).unwrap();
        set.texts.clone()
    };
    let rules = texts
        .rules
        .replace("g, projet-emploi, profil-recherche-sante\n", "");
    let lines = rules.lines().count();
    let broken = format!("{rules}p, projet-emploi, sante.sejours, poids, read, allow, clear\n");
    let form = |policy: &str, csrf: &str| -> Vec<(String, String)> {
        vec![
            ("csrf".into(), csrf.into()),
            ("comment".into(), "fin de l'accès emploi".into()),
            ("policy.csv".into(), policy.replace('\n', "\r\n")),
            ("habilitations.toml".into(), texts.habilitations.clone()),
            ("datasets.toml".into(), texts.datasets.clone()),
            ("tables.toml".into(), texts.tables.clone()),
            ("model.conf".into(), texts.model.clone()),
        ]
    };
    let refused = b
        .post_owned(gw.url("/console/versions"), form(&broken, &csrf), true)
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains(&format!("policy.csv:{}", lines + 1)),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("aria-invalid=\"true\""),
        "{}",
        refused.body
    );
    assert!(refused.body.contains("poids"), "the line itself is shown");

    // Forms without the session's token, with another, or sent from another site: refused.
    for (token, same_origin) in [("", true), ("forged-token", true), (csrf.as_str(), false)] {
        let mut f = form(&rules, token);
        if token.is_empty() {
            f.remove(0);
        }
        let r = if same_origin {
            b.post_owned(gw.url("/console/versions"), f, true).await
        } else {
            let refs: Vec<(String, String)> = f;
            let request = b
                .client
                .post(gw.url("/console/versions"))
                .header("sec-fetch-site", "cross-site")
                .form(&refs);
            b.read(request).await
        };
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "token {token:?}: {}",
            r.body
        );
    }

    // The fixed version: stored, not in force, with its access delta.
    let stored = b
        .post_owned(gw.url("/console/versions"), form(&rules, &csrf), true)
        .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);
    assert!(
        stored.body.contains("projet-emploi") && stored.body.contains("perd"),
        "{}",
        stored.body
    );
    assert!(
        stored.body.contains("dataset sante.sejours"),
        "{}",
        stored.body
    );
    let number = version_number(&stored.body);

    // Put in force only once confirmed.
    let url = gw.url(&format!("/console/versions/{number}/vigueur"));
    let unconfirmed = b
        .post_owned(url.clone(), vec![("csrf".into(), csrf.clone())], true)
        .await;
    assert_eq!(unconfirmed.status, StatusCode::UNPROCESSABLE_ENTITY);
    let applied = b
        .post_owned(
            url,
            vec![
                ("csrf".into(), csrf.clone()),
                ("confirmer".into(), "oui".into()),
            ],
            true,
        )
        .await;
    assert_eq!(applied.status, 200, "{}", applied.body);
    assert!(
        applied.body.contains(&format!("La version {number} (")),
        "{}",
        applied.body
    );

    // Roll back: the version before, from the history, with its own delta.
    let history = b.get(&gw.url("/console/versions")).await;
    assert_eq!(history.status, 200);
    let before = number - 1;
    assert!(
        history
            .body
            .contains(&format!("href=\"/console/versions/{before}\"")),
        "{}",
        history.body
    );
    let preview = b.get(&gw.url(&format!("/console/versions/{before}"))).await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(preview.body.contains("gagne"), "{}", preview.body);
    let rolled = b
        .post_owned(
            gw.url(&format!("/console/versions/{before}/vigueur")),
            vec![
                ("csrf".into(), csrf.clone()),
                ("confirmer".into(), "oui".into()),
            ],
            true,
        )
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.body);

    // The habilitations with their validity, the tables with their hidden cells, and "who
    // sees what" for a researcher described by their claims.
    let habilitations = b.get(&gw.url("/console/habilitations")).await;
    assert_eq!(habilitations.status, 200, "{}", habilitations.body);
    assert!(
        habilitations.body.contains("projet-expire") && habilitations.body.contains("échue"),
        "{}",
        habilitations.body
    );
    let tables = b.get(&gw.url("/console/tableaux")).await;
    assert_eq!(tables.status, 200, "{}", tables.body);
    assert!(
        tables.body.contains("stats.sejours_region_age_chapitre"),
        "{}",
        tables.body
    );
    let explained = b
        .post_owned(
            gw.url("/console/qui-voit-quoi"),
            vec![
                ("csrf".into(), csrf.clone()),
                ("issuer".into(), "demo".into()),
                ("sub".into(), "someone".into()),
                ("siret".into(), "18003502400017".into()),
                ("groups".into(), "projet-diabete".into()),
            ],
            true,
        )
        .await;
    assert_eq!(explained.status, 200, "{}", explained.body);
    assert!(
        explained.body.contains("projet-diabete") && explained.body.contains("sante.sejours"),
        "{}",
        explained.body
    );

    // The trail, searched: the apply's records under this hub's policy operations, and the
    // chain verified.
    let audit = b
        .get(&gw.url(&format!(
            "/console/audit?du={}&issue=allowed",
            chrono::Utc::now().date_naive()
        )))
        .await;
    assert_eq!(audit.status, 200, "{}", audit.body);
    assert!(audit.body.contains("Chaîne vérifiée"), "{}", audit.body);
    assert!(
        audit
            .body
            .contains("POST /console/versions/{number}/vigueur"),
        "{}",
        audit.body
    );
    assert!(!audit.body.contains("eyJ"), "no token in the page");
    let bad_day = b.get(&gw.url("/console/audit?du=hier")).await;
    assert_eq!(bad_day.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Sign out: the session is gone on the server, the cookie removed.
    let out = b
        .post_owned(
            gw.url("/console/deconnexion"),
            vec![("csrf".into(), csrf.clone())],
            true,
        )
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(!b.cookies.contains_key("__Host-passerelle-session"));
    let after = b.get(&gw.url("/console")).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);

    // Every console request is on the trail (sign-in, pages, forms, refusals, sign-out), and
    // no token or session id is.
    let trail: String = std::fs::read_dir(&gw.audit_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    for action in [
        "GET /console/callback",
        "GET /console/versions/nouvelle",
        "POST /console/versions",
        "POST /console/versions/{number}/vigueur",
        "POST /console/deconnexion",
    ] {
        assert!(
            trail.contains(&format!("\"action\":\"{action}\"")),
            "{action} on the trail"
        );
    }
    assert!(
        trail.contains("\"kind\":\"console\""),
        "records of kind console"
    );
    assert!(!trail.contains("eyJ"), "no token on the trail");
    let session_id = session
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1;
    assert!(!trail.contains(session_id), "no session id on the trail");
}

/// Two gateways behind a balancer that is not sticky, sharing `console.sessions_dir`: a
/// sign-in started on one is completed on the other (the console's public URL names it), the
/// session is served by both with one form token, a sign-out on one ends it on both, and the
/// folder holds no token or cookie in clear. (With sessions in each gateway's memory, the
/// callback would find no pending sign-in on the other gateway.)
#[tokio::test]
async fn a_console_session_is_served_by_every_gateway_sharing_the_sessions_folder() {
    let (dir, dev, mut config) = console_hub_config().await;
    let shared = dir.path().join("console-sessions");
    if let Some(console) = config.console.as_mut() {
        console.sessions_dir = Some(shared.clone());
    }
    config.audit.node = Some("gw-a".into());
    let mut config_b = config.clone();
    config_b.server.listen = "127.0.0.1:0".parse().unwrap();
    config_b.audit.node = Some("gw-b".into());
    config_b.audit.signing_key_file = dir.path().join("gw-b.key");
    passerelle::audit::SigningKey::generate()
        .unwrap()
        .write_new_files(&config_b.audit.signing_key_file)
        .unwrap();
    let a = TestServer::start_with(config).await;
    let b_gw = TestServer::start_with(config_b).await;
    a.wait_ready(Duration::from_secs(10)).await;
    b_gw.wait_ready(Duration::from_secs(10)).await;

    let mut b = Browser::new();
    let signed_in = b
        .sign_in_across(&b_gw, &a, "/console/connexion", "operateur")
        .await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let on_b = b.get(&b_gw.url("/console/versions")).await;
    assert_eq!(
        on_b.status, 200,
        "served by the other gateway: {}",
        on_b.body
    );
    let on_a = b.get(&a.url("/console/versions")).await;
    assert_eq!(on_a.status, 200, "{}", on_a.body);
    let csrf = on_a.hidden("csrf");
    assert_eq!(csrf, on_b.hidden("csrf"), "one form token for the session");

    // Nothing in clear in the shared folder: no token, no cookie.
    let cookie = b.cookies["__Host-passerelle-session"].clone();
    let mut folders = vec![shared.clone()];
    let mut files = Vec::new();
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    assert!(
        files.len() >= 2,
        "a session and its person's count: {files:?}"
    );
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("eyJ") && !text.contains(&cookie),
            "{}",
            path.display()
        );
        assert!(!path.to_string_lossy().contains(&cookie));
    }

    // Signed out on one gateway: the session is gone on both.
    let out = b
        .post_owned(
            b_gw.url("/console/deconnexion"),
            vec![("csrf".into(), csrf)],
            true,
        )
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    b.cookies
        .insert("__Host-passerelle-session".into(), cookie.clone());
    for gw in [&a, &b_gw] {
        let after = b.get(&gw.url("/console/versions")).await;
        assert_eq!(after.status, StatusCode::SEE_OTHER, "{}", after.body);
    }
    drop(dev);
}

/// A researcher who signs in is refused the console (no session), as is a sign-in replayed,
/// finished in another browser, or asking to come back to another site.
#[tokio::test]
async fn the_console_refuses_researchers_replays_foreign_sign_ins_and_open_redirects() {
    let (_dir, _dev, gw) = console_hub().await;

    let mut researcher = Browser::new();
    let page = researcher
        .sign_in(&gw, "/console/connexion", "chercheuse-diabete")
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(
        page.body.contains("réservée aux opérateurs"),
        "{}",
        page.body
    );
    assert!(!researcher.cookies.contains_key("__Host-passerelle-session"));

    // A sign-in finished in another browser (no sign-in cookie), then replayed: refused.
    let mut a = Browser::new();
    let to_issuer = a.get(&gw.url("/console/connexion")).await;
    let authorize = to_issuer.location();
    let url = url::Url::parse(&authorize).unwrap();
    let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    form.push(("persona".into(), "operateur".into()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let issuer = format!("http://127.0.0.1:{}", url.port().unwrap());
    let back = a.post(&format!("{issuer}/authorize"), &pairs, false).await;
    let callback = back.location();
    let mut other = Browser::new();
    let foreign = other.get(&callback).await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST, "{}", foreign.body);
    let replay = a.get(&callback).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.body);
    assert!(!a.cookies.contains_key("__Host-passerelle-session"));

    // Return URLs outside the console are replaced by the console's home.
    for wanted in [
        "https://evil.example/",
        "//evil.example/console",
        "/console/../v1/me",
        "/console\\@evil.example",
        "/consolex",
    ] {
        let mut b = Browser::new();
        let start = format!(
            "/console/connexion?retour={}",
            url::form_urlencoded::byte_serialize(wanted.as_bytes()).collect::<String>()
        );
        let page = b.sign_in(&gw, &start, "operateur").await;
        assert_eq!(page.status, 200, "{wanted}: {}", page.body);
        assert!(
            page.body.contains("url=/console\""),
            "{wanted}: {}",
            page.body
        );
    }
}

/// The loop above in Debian's Chromium, driven by Playwright for Python
/// (`tests/browser/console.py`): every page photographed and checked by axe-core, with no
/// serious or critical violation. `.ci/run` installs Chromium, Playwright and axe-core and sets
/// `PASSERELLE_BROWSER=required`; elsewhere the test is skipped when one is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_chromium_without_serious_accessibility_violations() {
    let required = std::env::var("PASSERELLE_BROWSER").is_ok_and(|v| v == "required");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let axe = root.join(".ci/interop/node_modules/axe-core/axe.min.js");
    let playwright = tokio::process::Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .await
        .is_ok_and(|o| o.status.success());
    let chromium = std::path::Path::new("/usr/bin/chromium").exists();
    if !(playwright && chromium && axe.exists()) {
        let missing = format!(
            "playwright {playwright}, /usr/bin/chromium {chromium}, axe-core {}",
            axe.exists()
        );
        assert!(
            !required,
            "PASSERELLE_BROWSER=required but not all there: {missing}"
        );
        eprintln!(
            "skipped: {missing} (apt install chromium; pip install playwright; npm ci in .ci/interop)"
        );
        return;
    }
    let (_dir, dev, gw) = console_hub().await;
    // The CAF looks the citizen's record up, so that the journal has a line.
    let caf = dev
        .token_for(passerelle::demo::personas::persona("caf").unwrap())
        .unwrap();
    let nir = &crate::support::allocataire_nirs(1)[0];
    let r = gw
        .client
        .get(gw.url(&format!(
            "/v1/lookup/social.allocataires/{nir}?context=Calcul%20du%20QF&recipient=13000170500016&object=dossier-42"
        )))
        .bearer_auth(&caf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let shots = std::env::var("PASSERELLE_SCREENSHOTS").map_or_else(
        |_| std::env::temp_dir().join("passerelle-console-screenshots"),
        std::path::PathBuf::from,
    );
    let output = tokio::process::Command::new("python3")
        .arg(root.join("tests/browser/console.py"))
        .arg(gw.url(""))
        .arg(&shots)
        .arg(&axe)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("console screenshots: {}", shots.display());
    assert!(output.status.success(), "{stdout}\n{stderr}");
}

/// A citizen signs in to `/moi` (a NIR asserted by an issuer trusted for it, at the assurance
/// level required) and sees the CAF's lookups of their own record, never another person's;
/// an operator without a NIR, a citizen below the level, and a journal session at the console
/// are refused.
#[tokio::test]
async fn a_citizen_sees_who_consulted_their_record_and_nothing_else() {
    let (_dir, dev, gw) = console_hub().await;
    let nirs = crate::support::allocataire_nirs(2);
    let caf = dev
        .token_for(passerelle::demo::personas::persona("caf").unwrap())
        .unwrap();
    for (nir, object) in [
        (&nirs[0], "dossier-42"),
        (&nirs[1], "dossier-autre-personne"),
    ] {
        let r = gw
            .client
            .get(gw.url(&format!(
                "/v1/lookup/social.allocataires/{nir}?context=Calcul%20du%20QF&recipient=13000170500016&object={object}"
            )))
            .bearer_auth(&caf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }

    let mut citizen = Browser::new();
    let first = citizen.get(&gw.url("/moi")).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(first.location(), "/moi/connexion?retour=/moi");
    let signed_in = citizen.sign_in(&gw, "/moi/connexion", "citoyen").await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    let journal = citizen.get(&gw.url("/moi")).await;
    assert_eq!(journal.status, 200, "{}", journal.body);
    // A journal reads the whole trail: once per person per few seconds (a reload loop costs
    // the hub nothing more).
    let again = citizen.get(&gw.url("/moi")).await;
    assert_eq!(
        again.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        again.body
    );
    assert!(again.headers.contains_key("retry-after"));
    assert!(
        journal.body.contains("SIRET 13000170500016"),
        "{}",
        journal.body
    );
    assert!(
        journal.body.contains("caf-quotient-familial"),
        "{}",
        journal.body
    );
    assert!(
        journal.body.contains("Calcul du QF") && journal.body.contains("dossier-42"),
        "{}",
        journal.body
    );
    assert!(
        journal.body.contains("quotient_familial"),
        "{}",
        journal.body
    );
    assert!(
        journal.body.contains("pseudonymes"),
        "the page says research names no one"
    );
    assert!(
        !journal.body.contains("dossier-autre-personne"),
        "another person's consultation"
    );
    assert!(
        !journal.body.contains(nirs[0].as_str()),
        "the NIR itself is not in the page"
    );
    let csp = journal.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    // The journal's session opens no console page.
    let console = citizen.get(&gw.url("/console")).await;
    assert_eq!(console.status, StatusCode::SEE_OTHER, "{}", console.body);
    assert!(console.location().starts_with("/console/connexion"));

    // An operator has no NIR: no journal.
    let mut operator = Browser::new();
    let refused = operator.sign_in(&gw, "/moi/connexion", "operateur").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(!operator.cookies.contains_key("__Host-passerelle-session"));

    // Sign-out ends the journal's session.
    let csrf = journal.hidden("csrf");
    let out = citizen
        .post(
            &gw.url("/moi/deconnexion"),
            &[("csrf", csrf.as_str())],
            true,
        )
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(
        citizen.get(&gw.url("/moi")).await.status,
        StatusCode::SEE_OTHER
    );

    // Every opening of the journal is on the trail, and no NIR is.
    let trail: String = std::fs::read_dir(&gw.audit_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        trail.contains("\"action\":\"GET /moi\""),
        "the journal's reads are recorded"
    );
    assert!(!trail.contains(nirs[0].as_str()), "no raw NIR on the trail");
}

/// Below the configured assurance level (`console.citizen_acr`), no journal.
#[tokio::test]
async fn a_citizen_below_the_required_assurance_level_gets_no_journal() {
    let (_dir, _dev, gw) = console_hub_with(|c| {
        c.console.as_mut().unwrap().citizen_acr = "eidas3".into();
    })
    .await;
    let mut citizen = Browser::new();
    let refused = citizen.sign_in(&gw, "/moi/connexion", "citoyen").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(!citizen.cookies.contains_key("__Host-passerelle-session"));
}

/// Four eyes (`policy.approvals = 2`): a new version is put in force only once another
/// operator than its author approved it, and never by the approver alone; its author cannot
/// approve it; a version in force before goes back without approval.
#[tokio::test]
async fn a_second_operator_approves_a_version_before_it_is_put_in_force() {
    let (dir, _dev, gw) = console_hub_with(|c| c.policy.approvals = 2).await;
    let mut author = Browser::new();
    author.sign_in(&gw, "/console/connexion", "operateur").await;
    let editor = author.get(&gw.url("/console/versions/nouvelle")).await;
    let csrf = editor.hidden("csrf");
    let texts = passerelle::policy::PolicySet::load(&dir.path().join("hub/policies"))
        .unwrap()
        .texts
        .clone();
    let rules = texts
        .rules
        .replace("g, projet-emploi, profil-recherche-sante\n", "");
    let form: Vec<(String, String)> = vec![
        ("csrf".into(), csrf.clone()),
        ("comment".into(), "quatre yeux".into()),
        ("policy.csv".into(), rules),
        ("habilitations.toml".into(), texts.habilitations.clone()),
        ("datasets.toml".into(), texts.datasets.clone()),
        ("tables.toml".into(), texts.tables.clone()),
        ("model.conf".into(), texts.model.clone()),
    ];
    let stored = author
        .post_owned(gw.url("/console/versions"), form, true)
        .await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);
    let number = version_number(&stored.body);
    let confirm = |csrf: &str| -> Vec<(String, String)> {
        vec![
            ("csrf".into(), csrf.into()),
            ("confirmer".into(), "oui".into()),
        ]
    };
    let apply = gw.url(&format!("/console/versions/{number}/vigueur"));
    let approve = gw.url(&format!("/console/versions/{number}/approbation"));

    // Not yet approved: refused; the author's own approval: refused.
    let early = author.post_owned(apply.clone(), confirm(&csrf), true).await;
    assert_eq!(early.status, StatusCode::FORBIDDEN, "{}", early.body);
    assert!(
        early.body.contains("policy.approvals = 2"),
        "{}",
        early.body
    );
    let own = author
        .post_owned(approve.clone(), vec![("csrf".into(), csrf.clone())], true)
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);

    // The second operator sees the approval form, approves, and cannot apply alone.
    let mut second = Browser::new();
    second
        .sign_in(&gw, "/console/connexion", "operatrice")
        .await;
    let preview = second
        .get(&gw.url(&format!("/console/versions/{number}")))
        .await;
    assert!(
        preview.body.contains("Approuver la version"),
        "{}",
        preview.body
    );
    let second_csrf = preview.hidden("csrf");
    let approved = second
        .post_owned(
            approve.clone(),
            vec![("csrf".into(), second_csrf.clone())],
            true,
        )
        .await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let twice = second
        .post_owned(approve, vec![("csrf".into(), second_csrf.clone())], true)
        .await;
    assert_eq!(twice.status, StatusCode::FORBIDDEN, "{}", twice.body);
    let alone = second
        .post_owned(apply.clone(), confirm(&second_csrf), true)
        .await;
    assert_eq!(alone.status, StatusCode::FORBIDDEN, "{}", alone.body);

    // The author applies it: two operators stand behind it.
    let applied = author.post_owned(apply, confirm(&csrf), true).await;
    assert_eq!(applied.status, 200, "{}", applied.body);

    // Version 1 was in force before: it goes back without approval.
    let back = author
        .post_owned(gw.url("/console/versions/1/vigueur"), confirm(&csrf), true)
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
}

/// A flood of anonymous sign-in starts from one address (each would store a pending sign-in
/// and could push out other people's sign-ins in progress) is cut at the source's budget of
/// requests without a valid token (`limits.unauthenticated_per_minute`), console and journal
/// alike: 429 with a French page, no sign-in cookie, nothing more stored.
#[tokio::test]
async fn a_flood_of_sign_in_starts_from_one_address_is_cut_at_its_budget() {
    let (_dir, _dev, gw) = console_hub_with(|c| c.limits.unauthenticated_per_minute = 5).await;
    let mut b = Browser::new();
    let mut statuses = Vec::new();
    let mut last = None;
    for path in ["/console/connexion", "/moi/connexion"]
        .iter()
        .cycle()
        .take(12)
    {
        let answer = b.get(&gw.url(path)).await;
        statuses.push(answer.status.as_u16());
        last = Some(answer);
    }
    assert_eq!(statuses[..5], [303; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let last = last.unwrap();
    assert!(
        last.body
            .contains("Trop de demandes sont venues de votre adresse"),
        "{}",
        last.body
    );
    assert!(
        last.set_cookies().is_empty(),
        "no sign-in cookie for a refused start"
    );
}
