//! Policies: truth tables for every demo persona × dataset × column, deny over allow, class
//! rules, expiry, revocation, missing claims, `check` problems with file:line, agreement with
//! Casbin's own enforcer, hot reload and the operator API.

use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;
use passerelle::identity::Principal;
use passerelle::policy::treatment::DateGranularity;
use passerelle::policy::{ColumnTreatment, PolicySet, PolicyTexts, Refusal};
use serde_json::{Value, json};

use crate::support::{TestServer, copy_dir, hub};

fn shipped() -> PolicyTexts {
    PolicyTexts {
        model: include_str!("../../policies/model.conf").into(),
        rules: include_str!("../../policies/policy.csv").into(),
        habilitations: include_str!("../../policies/habilitations.toml").into(),
        datasets: include_str!("../../policies/datasets.toml").into(),
        tables: include_str!("../../policies/tables.toml").into(),
    }
}

fn set_with(texts: PolicyTexts) -> PolicySet {
    PolicySet::from_texts(Path::new("policies"), texts).unwrap()
}

fn problems_of(texts: PolicyTexts) -> Vec<String> {
    PolicySet::from_texts(Path::new("policies"), texts)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
}

/// A demo persona's principal, with the claims its token carries.
fn persona(id: &str) -> Principal {
    persona_of(id, "demo")
}

/// The same persona's claims, from the issuer named `issuer`.
fn persona_of(id: &str, issuer: &str) -> Principal {
    let p = passerelle::demo::personas::persona(id).unwrap();
    Principal::for_explain(&json!({
        "sub": p.subject, "idp_id": p.idp_id, "siret": p.siret,
        "groups": p.groups, "roles": p.roles, "issuer": issuer,
    }))
    .unwrap()
}

fn treatment(set: &PolicySet, who: &str, dataset: &str, column: &str) -> Option<ColumnTreatment> {
    let principal = persona(who);
    let habilitation = set.resolve(&principal, None, today()).ok()?;
    let plan = set.plan(&principal, habilitation);
    let d = plan.dataset(dataset)?;
    Some(
        d.columns()
            .iter()
            .find(|c| c.name() == column)?
            .treatment()
            .clone(),
    )
}

fn pseudo(domain: &str) -> Option<ColumnTreatment> {
    Some(ColumnTreatment::Pseudonymised {
        domain: domain.into(),
    })
}

const CLEAR: Option<ColumnTreatment> = Some(ColumnTreatment::Clear);
const HIDDEN: Option<ColumnTreatment> = Some(ColumnTreatment::Hidden);

#[test]
fn truth_table_of_the_demo_hub() {
    let set = set_with(shipped());
    let year = Some(ColumnTreatment::DateGeneralised {
        granularity: DateGranularity::Year,
    });
    let departement = Some(ColumnTreatment::PostcodeDepartement);
    // (persona, dataset, column, expected treatment; None = dataset not accessible)
    let table: Vec<(&str, &str, &str, Option<ColumnTreatment>)> = vec![
        ("chercheuse-diabete", "sante.sejours", "id_sejour", CLEAR),
        (
            "chercheuse-diabete",
            "sante.sejours",
            "nir",
            pseudo("projet-diabete"),
        ),
        ("chercheuse-diabete", "sante.sejours", "nom", HIDDEN),
        (
            "chercheuse-diabete",
            "sante.sejours",
            "date_naissance",
            year.clone(),
        ),
        ("chercheuse-diabete", "sante.sejours", "sexe", CLEAR),
        (
            "chercheuse-diabete",
            "sante.sejours",
            "code_postal",
            departement,
        ),
        ("chercheuse-diabete", "sante.sejours", "region", CLEAR),
        ("chercheuse-diabete", "sante.sejours", "date_entree", CLEAR),
        ("chercheuse-diabete", "sante.sejours", "date_sortie", CLEAR),
        ("chercheuse-diabete", "sante.sejours", "diagnostic", CLEAR),
        ("chercheuse-diabete", "sante.sejours", "cout", CLEAR),
        (
            "chercheuse-diabete",
            "fiscal.revenus",
            "nir",
            pseudo("projet-diabete"),
        ),
        ("chercheuse-diabete", "fiscal.revenus", "annee", CLEAR),
        (
            "chercheuse-diabete",
            "fiscal.revenus",
            "revenu_fiscal_reference",
            CLEAR,
        ),
        (
            "chercheuse-diabete",
            "fiscal.revenus",
            "nombre_parts",
            CLEAR,
        ),
        (
            "chercheuse-diabete",
            "fiscal.revenus",
            "montant_impot",
            HIDDEN,
        ),
        (
            "chercheuse-diabete",
            "fiscal.revenus",
            "situation_familiale",
            HIDDEN,
        ),
        ("chercheuse-diabete", "social.allocataires", "nir", None),
        (
            "chercheuse-diabete",
            "entreprises.etablissements",
            "siret",
            None,
        ),
        (
            "chercheur-emploi",
            "sante.sejours",
            "nir",
            pseudo("projet-emploi"),
        ),
        ("chercheur-emploi", "sante.sejours", "nom", HIDDEN),
        ("chercheur-emploi", "sante.sejours", "date_naissance", CLEAR),
        ("chercheur-emploi", "sante.sejours", "diagnostic", CLEAR),
        ("chercheur-emploi", "fiscal.revenus", "nir", None),
        ("chercheur-emploi", "social.allocataires", "nir", None),
        ("caf", "social.allocataires", "quotient_familial", CLEAR),
        ("caf", "social.allocataires", "nombre_enfants", CLEAR),
        ("caf", "social.allocataires", "nir", HIDDEN),
        ("caf", "social.allocataires", "numero_allocataire", HIDDEN),
        ("caf", "social.allocataires", "commune", HIDDEN),
        ("caf", "social.allocataires", "montant_prestations", HIDDEN),
        ("caf", "fiscal.revenus", "revenu_fiscal_reference", CLEAR),
        ("caf", "fiscal.revenus", "nombre_parts", CLEAR),
        ("caf", "fiscal.revenus", "montant_impot", HIDDEN),
        ("caf", "fiscal.revenus", "situation_familiale", HIDDEN),
        ("caf", "sante.sejours", "nir", None),
        ("caf", "entreprises.etablissements", "siret", None),
        ("chercheur-expire", "sante.sejours", "nir", None),
        ("operateur", "sante.sejours", "nir", None),
        ("operateur", "fiscal.revenus", "nir", None),
    ];
    for (who, dataset, column, expected) in table {
        assert_eq!(
            treatment(&set, who, dataset, column),
            expected,
            "{who} / {dataset}.{column}"
        );
    }
}

#[test]
fn actions_row_filters_and_lookup_keys_of_the_demo_hub() {
    let set = set_with(shipped());
    let diabete = persona("chercheuse-diabete");
    let h = set.resolve(&diabete, None, today()).unwrap();
    let plan = set.plan(&diabete, h);
    let sejours = plan.dataset("sante.sejours").unwrap();
    assert!(sejours.query_allowed() && sejours.lookup_key().is_none());
    assert_eq!(sejours.row_filters().len(), 1);
    assert_eq!(sejours.row_filters()[0].source(), "region = '84'");
    assert_eq!(plan.datasets().count(), 2);

    let emploi = persona("chercheur-emploi");
    let plan = set.plan(&emploi, set.resolve(&emploi, None, today()).unwrap());
    assert!(
        plan.dataset("sante.sejours")
            .unwrap()
            .row_filters()
            .is_empty()
    );

    let caf = persona("caf");
    let plan = set.plan(&caf, set.resolve(&caf, None, today()).unwrap());
    for dataset in ["social.allocataires", "fiscal.revenus"] {
        let d = plan.dataset(dataset).unwrap();
        assert!(!d.query_allowed(), "the CAF runs no SQL on {dataset}");
        assert_eq!(d.lookup_key(), Some("nir"));
    }
}

#[test]
fn every_decision_names_the_line_that_made_it() {
    let set = set_with(shipped());
    let p = persona("chercheuse-diabete");
    let plan = set.plan(&p, set.resolve(&p, None, today()).unwrap());
    let sejours = plan.dataset("sante.sejours").unwrap();
    let nom = sejours
        .columns()
        .iter()
        .find(|c| c.name() == "nom")
        .unwrap();
    assert_eq!(nom.reasons()[0].text, "p, *, sante.*, nom, read, deny, -");
    let line = nom.reasons()[0].line.unwrap();
    let csv: Vec<&str> = include_str!("../../policies/policy.csv").lines().collect();
    assert_eq!(csv[line - 1], nom.reasons()[0].text);
    let montant = plan
        .dataset("fiscal.revenus")
        .unwrap()
        .columns()
        .iter()
        .find(|c| c.name() == "montant_impot")
        .unwrap()
        .reasons()[0]
        .clone();
    assert!(
        montant.text.contains("montant_impot, read, deny"),
        "deny overrides the @tax_secret allow: {montant:?}"
    );
}

#[test]
fn expired_not_started_revoked_and_obsolete_habilitations_give_nothing() {
    let set = set_with(shipped());
    let expired = set.resolve(&persona("chercheur-expire"), None, today());
    assert!(matches!(expired, Err(Refusal::Expired { ref id, .. }) if id == "projet-expire"));
    assert_eq!(expired.unwrap_err().code(), "habilitation_expired");
    // The day of the end date is still valid; the next day is not.
    let emploi = persona("chercheur-emploi");
    let end = NaiveDate::from_ymd_opt(2027, 6, 30).unwrap();
    assert!(set.resolve(&emploi, None, end).is_ok());
    assert!(set.resolve(&emploi, None, end.succ_opt().unwrap()).is_err());
    let before = NaiveDate::from_ymd_opt(2024, 6, 30).unwrap();
    assert_eq!(
        set.resolve(&emploi, None, before).unwrap_err().code(),
        "habilitation_not_started"
    );
    for (state, code) in [
        ("revoked", "habilitation_revoked"),
        ("obsolete", "habilitation_obsolete"),
    ] {
        let mut texts = shipped();
        texts.habilitations = texts.habilitations.replacen(
            "end = 2027-06-30\nstate = \"active\"",
            &format!("end = 2027-06-30\nstate = \"{state}\""),
            1,
        );
        let set = set_with(texts);
        assert_eq!(
            set.resolve(&emploi, None, today()).unwrap_err().code(),
            code
        );
    }
}

#[test]
fn missing_claims_deny_and_never_default() {
    let set = set_with(shipped());
    // The CAF's server without its SIRET claim holds nothing.
    let mut caf = persona("caf");
    caf.organisation_siret = None;
    assert_eq!(
        set.resolve(&caf, None, today()).unwrap_err(),
        Refusal::NoHabilitation
    );
    // A group alone does not make an operator, nor a role without the organisation.
    let mut operator = persona("operateur");
    assert!(set.is_operator(&operator));
    operator.organisation_siret = None;
    assert!(!set.is_operator(&operator));
    // A filter using the caller's organisation refuses the dataset when the claim is missing.
    let mut texts = shipped();
    texts.rules.push_str("p, projet-emploi, sante.sejours, *, filter, allow, \"code_postal = principal.organisation\"\n");
    let set = set_with(texts);
    let mut emploi = persona("chercheur-emploi");
    emploi.organisation_siret = None;
    let plan = set.plan(&emploi, set.resolve(&emploi, None, today()).unwrap());
    assert!(
        plan.dataset("sante.sejours").is_none(),
        "dataset must be refused"
    );
}

#[test]
fn habilitation_choice_is_explicit_when_several_are_held() {
    let set = set_with(shipped());
    let mut both = persona("chercheuse-diabete");
    both.groups.push("projet-emploi".into());
    let err = set.resolve(&both, None, today()).unwrap_err();
    assert_eq!(err.code(), "habilitation_required");
    assert_eq!(
        set.resolve(&both, Some("projet-emploi"), today())
            .unwrap()
            .id,
        "projet-emploi"
    );
    // Unknown and not-held habilitations answer the same.
    let unknown = set
        .resolve(&both, Some("no-such-thing"), today())
        .unwrap_err();
    let not_held = set
        .resolve(&both, Some("caf-quotient-familial"), today())
        .unwrap_err();
    assert_eq!(unknown.code(), not_held.code());
}

#[test]
fn class_rules_cover_new_columns_without_new_rules() {
    let mut texts = shipped();
    texts.datasets = texts.datasets.replacen(
        "[[datasets.fields]]\nname = \"montant_impot\"",
        "[[datasets.fields]]\nname = \"credit_impot\"\ntitle = \"Crédit d'impôt\"\ntype = \"integer\"\nclass = \"tax_secret\"\n\n[[datasets.fields]]\nname = \"montant_impot\"",
        1,
    );
    assert!(
        texts.datasets.contains("credit_impot"),
        "fixture edit failed"
    );
    let set = set_with(texts);
    assert_eq!(
        treatment(&set, "chercheuse-diabete", "fiscal.revenus", "credit_impot"),
        CLEAR
    );
    assert_eq!(
        treatment(&set, "caf", "fiscal.revenus", "credit_impot"),
        HIDDEN
    );
}

#[test]
fn check_names_file_and_line_of_every_problem() {
    type Edit = Box<dyn Fn(&mut PolicyTexts)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, projet-diabete, sante.inconnu, *, query, allow, -\n")
            }),
            "unknown dataset or group `sante.inconnu`",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, projet-diabete, sante.sejours, poids, read, allow, clear\n")
            }),
            "unknown column `poids`",
        ),
        (
            Box::new(|t| {
                t.rules.push_str(
                    "p, projet-diabete, sante.sejours, @secret_defense, read, allow, clear\n",
                )
            }),
            "unknown class `@secret_defense`",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, projet-diabete, sante.sejours, *, filter, allow, \"region = \"\n")
            }),
            "filter does not parse",
        ),
        (
            Box::new(|t| {
                t.rules.push_str("p, projet-diabete, sante.sejours, *, filter, allow, \"lower(region) = '84'\"\n")
            }),
            "a function call is not allowed",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, projet-diabete, sante.sejours, code_postal, read, allow, clear\n")
            }),
            "contradicts line",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, projet-diabete, sante.sejours, diagnostic, read, allow, year\n")
            }),
            "does not fit column",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, inconnu, sante.sejours, *, query, allow, -\n")
            }),
            "unknown habilitation or profile `inconnu`",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, profil-inconnu, sante.sejours, *, query, allow, -\n")
            }),
            "unknown habilitation or profile `profil-inconnu`",
        ),
        (
            Box::new(|t| t.rules.push_str("g, inconnu, profil-recherche-sante\n")),
            "unknown habilitation or profile `inconnu`",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, projet-diabete, groupe-inconnu, *, query, allow, -\n")
            }),
            "unknown dataset or group `groupe-inconnu`",
        ),
        (
            Box::new(|t| t.rules.push_str("g2, sante.inconnu, donnees-appariables\n")),
            "unknown dataset or group `sante.inconnu`",
        ),
        (
            Box::new(|t| {
                t.rules.push_str(
                    "g, profil-recherche-sante, profil-b\ng, profil-b, profil-recherche-sante\n",
                )
            }),
            "`g` lines make a cycle",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("g2, donnees-appariables, donnees-appariables\n")
            }),
            "`g2` lines make a cycle",
        ),
        (
            Box::new(|t| t.rules.push_str("g, projet-emploi, projet-diabete\n")),
            "`projet-diabete` is a habilitation, not a profile",
        ),
        (
            Box::new(|t| t.rules.push_str("g2, sante.sejours, fiscal.revenus\n")),
            "`fiscal.revenus` is a dataset, not a group",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, projet-diabete, justice.*, *, query, allow, -\n")
            }),
            "pattern `justice.*` matches no dataset",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, projet-diabete, *.sejours, *, query, allow, -\n")
            }),
            "`*` may only end a pattern",
        ),
        (
            Box::new(|t| {
                t.rules
                    .push_str("p, projet-diabete, fiscal.*, code_postal, read, allow, clear\n")
            }),
            "no dataset of `fiscal.*` has a column `code_postal`",
        ),
        (
            Box::new(|t| {
                t.model = passerelle::policy::model::model_text(
                    passerelle::policy::model::ModelFeatures::default(),
                )
            }),
            "model.conf has no `g = _, _` role definition",
        ),
        (
            Box::new(|t| {
                t.habilitations = t.habilitations.replacen(
                    "legal_basis = { nature = \"CSP L1461-1\"",
                    "legal_basis = { nature = \"\"",
                    1,
                )
            }),
            "legal basis",
        ),
        (
            Box::new(|t| t.habilitations = t.habilitations.replacen("end = 2027-12-31\n", "", 1)),
            "end date",
        ),
        (
            Box::new(|t| t.model = t.model.replace("!some(where (p.eft == deny))", "true")),
            "not one of passerelle's access models",
        ),
    ];
    for (edit, expected) in cases {
        let mut texts = shipped();
        edit(&mut texts);
        let problems = problems_of(texts);
        let found = problems.iter().find(|p| p.contains(expected));
        let found = found.unwrap_or_else(|| panic!("`{expected}` not in {problems:#?}"));
        if !expected.contains("model") {
            let has_line = found
                .split(':')
                .nth(1)
                .is_some_and(|l| l.trim().parse::<usize>().is_ok());
            assert!(has_line, "no line number in `{found}`");
        }
    }
}

/// Casbin's own enforcer, given model.conf and policy.csv, agrees with passerelle on every
/// (habilitation, dataset, column, act) allow/deny of the demo hub.
#[tokio::test]
async fn decisions_agree_with_casbins_own_enforcer() {
    use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};
    let texts = shipped();
    let model = DefaultModel::from_str(&texts.model).await.unwrap();
    let enforcer = Enforcer::new(model, StringAdapter::new(texts.rules.clone()))
        .await
        .unwrap();
    let set = set_with(texts);
    let mut checked = 0;
    for h in &set.habilitations.list {
        for d in set.evaluate(h, None) {
            let dataset = set.catalog.dataset(d.name()).unwrap();
            // A table is read under `aggregate` only, and `aggregate` gives nothing on
            // microdata: what Casbin answers for `aggregate` is a table's `query`.
            let table = dataset.kind == passerelle::policy::DatasetKind::Table;
            for (act, ours) in [
                ("query", d.query_allowed()),
                ("aggregate", d.aggregates_allowed()),
                ("lookup", d.lookup_key().is_some()),
            ] {
                let asked = if table && act == "query" {
                    "aggregate"
                } else {
                    act
                };
                let theirs = enforcer
                    .enforce((h.id.as_str(), d.name(), "*", "*", asked))
                    .unwrap()
                    && (table || act != "aggregate");
                assert_eq!(ours, theirs, "{} {} {act}", h.id, d.name());
                checked += 1;
            }
            for c in d.columns() {
                let class = format!(
                    "@{}",
                    serde_json::to_value(c.class()).unwrap().as_str().unwrap()
                );
                let field = dataset.field(c.name()).unwrap();
                assert_eq!(field.class, c.class());
                // A table is read whole under `aggregate`: no `read` rule applies to it.
                let theirs = if table {
                    d.aggregates_allowed()
                } else {
                    enforcer
                        .enforce((h.id.as_str(), d.name(), c.name(), class.as_str(), "read"))
                        .unwrap()
                };
                let ours = !c.treatment().is_hidden()
                    || c.reasons()
                        .iter()
                        .any(|r| r.text.contains("read, allow, hide"));
                assert_eq!(ours, theirs, "{} {}.{}", h.id, d.name(), c.name());
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} decisions compared");
}

// ---------------------------------------------------------------- over HTTPS

/// A private copy of the shared hub (tests that change policies must not touch the shared one).
pub(crate) fn private_hub() -> (tempfile::TempDir, passerelle::config::Config) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&hub().root, &dir.path().join("hub"));
    let mut config =
        passerelle::config::Config::load(&dir.path().join("hub/passerelle.toml")).unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    (dir, config)
}

struct Hub {
    _dir: tempfile::TempDir,
    dev: passerelle::demo::DevIssuer,
    server: TestServer,
}

impl Hub {
    async fn start(watch_secs: u64) -> Hub {
        let (dir, mut config) = private_hub();
        let dev = passerelle::demo::DevIssuer::start().await.unwrap();
        config.identity.issuers = vec![dev.issuer_config()];
        config.policy.watch_interval_secs = watch_secs;
        let server = TestServer::start_with(config).await;
        server.wait_ready(Duration::from_secs(10)).await;
        Hub {
            _dir: dir,
            dev,
            server,
        }
    }

    fn token(&self, who: &str) -> String {
        self.dev
            .token_for(passerelle::demo::personas::persona(who).unwrap())
            .unwrap()
    }

    async fn me(&self, who: &str) -> Value {
        let r = self.server.get("/v1/me", Some(&self.token(who))).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    fn policy_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("hub/policies")
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        who: &str,
    ) -> reqwest::Response {
        let mut request = self
            .server
            .client
            .request(method, self.server.url(path))
            .bearer_auth(self.token(who));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}

fn datasets_of(me: &Value, habilitation: &str) -> Vec<String> {
    me["habilitations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == habilitation)
        .map(|h| {
            h["datasets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn me_shows_each_personas_habilitations_and_warnings() {
    let hub = Hub::start(0).await;
    let me = hub.me("chercheuse-diabete").await;
    assert_eq!(
        datasets_of(&me, "projet-diabete"),
        vec!["sante.sejours", "fiscal.revenus"]
    );
    assert_eq!(me["habilitations"][0]["end"], "2027-12-31");
    assert_eq!(me["operator"], false);
    let expired = hub.me("chercheur-expire").await;
    assert_eq!(expired["habilitations"][0]["validity"], "expired");
    assert!(
        expired["warnings"][0]
            .as_str()
            .unwrap()
            .contains("expired on 2025-01-01")
    );
    assert!(datasets_of(&expired, "projet-expire").is_empty());
    let caf = hub.me("caf").await;
    assert_eq!(
        datasets_of(&caf, "caf-quotient-familial"),
        vec!["fiscal.revenus", "social.allocataires"]
    );
    let operator = hub.me("operateur").await;
    assert_eq!(operator["operator"], true);
    assert_eq!(operator["habilitations"], json!([]));
}

#[tokio::test]
async fn operator_api_is_for_operators_only() {
    let hub = Hub::start(0).await;
    for who in ["chercheuse-diabete", "caf", "chercheur-expire"] {
        let r = hub
            .admin(reqwest::Method::GET, "/v1/admin/policy", None, who)
            .await;
        assert_eq!(r.status(), 403, "{who}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "not_operator");
    }
    let anonymous = hub.server.get("/v1/admin/policy", None).await;
    assert_eq!(anonymous.status(), 401);
    let r = hub
        .admin(reqwest::Method::GET, "/v1/admin/policy", None, "operateur")
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["files"]["policy.csv"]
            .as_str()
            .unwrap()
            .contains("projet-diabete")
    );
}

#[tokio::test]
async fn submit_diff_apply_history_and_rollback() {
    let hub = Hub::start(0).await;
    let current: Value = hub
        .admin(reqwest::Method::GET, "/v1/admin/policy", None, "operateur")
        .await
        .json()
        .await
        .unwrap();
    let mut files = current["files"].clone();
    let rules = files["policy.csv"]
        .as_str()
        .unwrap()
        .replace("g, projet-emploi, profil-recherche-sante\n", "");
    files["policy.csv"] = json!(rules);

    // An invalid set is refused with file:line and nothing is stored.
    let mut broken = files.clone();
    broken["policy.csv"] = json!(format!(
        "{rules}p, projet-emploi, sante.sejours, poids, read, allow, clear\n"
    ));
    let r = hub
        .admin(
            reqwest::Method::POST,
            "/v1/admin/policy/versions",
            Some(json!({"files": broken})),
            "operateur",
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "policy_invalid");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("policy.csv:") && detail.contains("poids"),
        "{detail}"
    );
    assert!(!detail.contains('/'), "no paths in answers: {detail}");

    // A submission missing a file, or naming one that is not a policy file, is invalid too,
    // naming it (not a bare `bad_request`).
    let mut incomplete = files.clone();
    incomplete
        .as_object_mut()
        .unwrap()
        .remove("habilitations.toml");
    incomplete["notes.txt"] = json!("x");
    let r = hub
        .admin(
            reqwest::Method::POST,
            "/v1/admin/policy/versions",
            Some(json!({"files": incomplete})),
            "operateur",
        )
        .await;
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "policy_invalid");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("habilitations.toml: missing") && detail.contains("`notes.txt`"),
        "{detail}"
    );

    // A valid one is stored with its dry-run diff, not yet in force.
    let r = hub
        .admin(
            reqwest::Method::POST,
            "/v1/admin/policy/versions",
            Some(json!({"files": files, "comment": "fin de l'accès emploi"})),
            "operateur",
        )
        .await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["warnings"], json!([]), "no warning on this set");
    let number = body["version"]["number"].as_u64().unwrap();
    assert!(number >= 2, "the set in force at start is version 1");
    let diff = body["diff"].as_array().unwrap();
    assert!(
        diff.iter().any(|c| c["habilitation"] == "projet-emploi"
            && c["kind"] == "loses"
            && c["what"] == "dataset sante.sejours"),
        "{diff:?}"
    );
    assert_eq!(
        datasets_of(&hub.me("chercheur-emploi").await, "projet-emploi"),
        vec!["sante.sejours"]
    );

    // Apply: in force at once, and on disk.
    let r = hub
        .admin(
            reqwest::Method::POST,
            &format!("/v1/admin/policy/versions/{number}/apply"),
            None,
            "operateur",
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(datasets_of(&hub.me("chercheur-emploi").await, "projet-emploi").is_empty());
    assert_eq!(
        std::fs::read_to_string(hub.policy_dir().join("policy.csv")).unwrap(),
        rules
    );

    // History names the author; rollback to version 1 restores the access.
    let history: Value = hub
        .admin(
            reqwest::Method::GET,
            "/v1/admin/policy/versions",
            None,
            "operateur",
        )
        .await
        .json()
        .await
        .unwrap();
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(
        versions.last().unwrap()["author"],
        "sophie.leroy@hub.example.gouv.fr"
    );
    let r = hub
        .admin(
            reqwest::Method::POST,
            "/v1/admin/policy/rollback",
            Some(json!({"number": 1})),
            "operateur",
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        datasets_of(&hub.me("chercheur-emploi").await, "projet-emploi"),
        vec!["sante.sejours"]
    );
}

#[tokio::test]
async fn a_file_change_reloads_and_an_invalid_one_is_refused_naming_the_file_only() {
    let hub = Hub::start(1).await;
    let file = hub.policy_dir().join("policy.csv");
    let original = std::fs::read_to_string(&file).unwrap();
    let v1 = hub.me("chercheur-emploi").await["policy_version"].clone();

    // Invalid: refused, the old set keeps serving, the error is visible to operators.
    std::fs::write(
        &file,
        format!("{original}p, projet-emploi, nulle.part, *, query, allow, -\n"),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let policy: Value = hub
            .admin(reqwest::Method::GET, "/v1/admin/policy", None, "operateur")
            .await
            .json()
            .await
            .unwrap();
        if policy["last_reload_error"].is_string() {
            let error = policy["last_reload_error"].as_str().unwrap();
            assert!(error.contains("nulle.part"), "{error}");
            // SECURITY: the file's name, never the hub's path.
            assert!(error.contains("policy.csv"), "{error}");
            let root = hub.policy_dir().parent().unwrap().display().to_string();
            assert!(!error.contains(&root) && !error.contains('/'), "{error}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reload error never reported"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let me = hub.me("chercheur-emploi").await;
    assert_eq!(me["policy_version"], v1);
    assert_eq!(datasets_of(&me, "projet-emploi"), vec!["sante.sejours"]);

    // Valid: applied without restart.
    std::fs::write(
        &file,
        original.replace("g, projet-emploi, profil-recherche-sante\n", ""),
    )
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let me = hub.me("chercheur-emploi").await;
        if me["policy_version"] != v1 {
            assert!(datasets_of(&me, "projet-emploi").is_empty());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "valid change never applied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn concurrent_requests_during_reloads_never_see_a_half_applied_policy() {
    let hub = Hub::start(0).await;
    let current: Value = hub
        .admin(reqwest::Method::GET, "/v1/admin/policy", None, "operateur")
        .await
        .json()
        .await
        .unwrap();
    let with_access = current["version"].as_str().unwrap().to_string();
    let mut files = current["files"].clone();
    // Version B changes two files at once: the rule AND the habilitation's title.
    files["policy.csv"] = json!(
        files["policy.csv"]
            .as_str()
            .unwrap()
            .replace("g, projet-emploi, profil-recherche-sante\n", "")
    );
    files["habilitations.toml"] = json!(files["habilitations.toml"].as_str().unwrap().replace(
        "Santé et trajectoires d'emploi",
        "Santé et emploi (suspendu)"
    ));
    let r = hub
        .admin(
            reqwest::Method::POST,
            "/v1/admin/policy/versions",
            Some(json!({"files": files})),
            "operateur",
        )
        .await;
    let b: Value = r.json().await.unwrap();
    let number_b = b["version"]["number"].as_u64().unwrap();
    let without_access = b["version"]["version"].as_str().unwrap().to_string();

    let readers: Vec<_> = (0..4)
        .map(|_| {
            let client = hub.server.client.clone();
            let url = hub.server.url("/v1/me");
            let token = hub.token("chercheur-emploi");
            let (a, b) = (with_access.clone(), without_access.clone());
            tokio::spawn(async move {
                let mut seen = 0;
                for _ in 0..40 {
                    let me: Value = client
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    let version = me["policy_version"].as_str().unwrap();
                    let h = &me["habilitations"][0];
                    let has = !h["datasets"].as_array().unwrap().is_empty();
                    let title = h["title"].as_str().unwrap();
                    if version == a {
                        assert!(
                            has && title == "Santé et trajectoires d'emploi",
                            "half-applied A: {me}"
                        );
                    } else {
                        assert_eq!(version, b, "unknown version");
                        assert!(
                            !has && title == "Santé et emploi (suspendu)",
                            "half-applied B: {me}"
                        );
                    }
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    for i in 0..10 {
        let number = if i % 2 == 0 { number_b } else { 1 };
        let r = hub
            .admin(
                reqwest::Method::POST,
                &format!("/v1/admin/policy/versions/{number}/apply"),
                None,
                "operateur",
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    for reader in readers {
        assert_eq!(reader.await.unwrap(), 40);
    }
}

#[tokio::test]
async fn a_live_catalog_change_that_no_longer_matches_the_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&hub().root, &dir.path().join("hub"));
    let policies = dir.path().join("hub/policies");
    let history =
        passerelle::policy::history::PolicyHistory::new(&dir.path().join("hub/policy-history"));
    let store = passerelle::policy::PolicyStore::load_checked(
        &policies,
        Some(std::sync::Arc::new(dir.path().join("hub/data"))),
        Some(history.clone()),
    )
    .unwrap();
    let before = store.current().version.clone();
    let catalog = std::fs::read_to_string(policies.join("datasets.toml")).unwrap();
    std::fs::write(
        policies.join("datasets.toml"),
        catalog.replacen(
            "[[datasets.fields]]\nname = \"montant_impot\"",
            "[[datasets.fields]]\nname = \"credit_impot\"\ntitle = \"Crédit\"\ntype = \"integer\"\nclass = \"tax_secret\"\n\n[[datasets.fields]]\nname = \"montant_impot\"",
            1,
        ),
    )
    .unwrap();
    let problems = store.reload().await.unwrap_err();
    assert!(
        problems.iter().any(|p| p
            .to_string()
            .contains("`credit_impot` is in the catalog but not in the file")),
        "{problems:?}"
    );
    assert_eq!(store.current().version, before);
    // A valid hand edit is put in force and recorded in the history (so it can be rolled back to).
    std::fs::write(policies.join("datasets.toml"), &catalog).unwrap();
    let rules = std::fs::read_to_string(policies.join("policy.csv")).unwrap();
    std::fs::write(policies.join("policy.csv"), format!("{rules}# hand edit\n")).unwrap();
    assert!(matches!(
        store.reload().await.unwrap(),
        passerelle::policy::ReloadOutcome::Applied { .. }
    ));
    let recorded = history.list().unwrap();
    assert_eq!(recorded.last().unwrap().version, store.current().version);
    // Applied through the store (the operator API), the same mismatch is refused before
    // anything is written: the folder other gateways read keeps the set in force.
    let in_force = store.current();
    let mut mismatched = in_force.texts.clone();
    mismatched.datasets = mismatched.datasets.replacen(
        "[[datasets.fields]]\nname = \"montant_impot\"",
        "[[datasets.fields]]\nname = \"credit_impot\"\ntitle = \"Crédit\"\ntype = \"integer\"\nclass = \"tax_secret\"\n\n[[datasets.fields]]\nname = \"montant_impot\"",
        1,
    );
    assert!(matches!(
        store.apply(mismatched).await,
        Err(passerelle::policy::ApplyError::Invalid(_))
    ));
    assert_eq!(
        PolicyTexts::read(&policies).unwrap().version(),
        in_force.version
    );
}

#[test]
fn a_habilitation_can_require_certificate_bound_tokens() {
    let mut texts = shipped();
    texts.habilitations = texts.habilitations.replacen(
        "expected_volume_per_minute = 250\n",
        "expected_volume_per_minute = 250\nrequire_certificate_bound_token = true\n",
        1,
    );
    let set = set_with(texts);
    let mut caf = persona("caf");
    assert_eq!(
        set.resolve(&caf, None, today()).unwrap_err().code(),
        "certificate_binding_required"
    );
    caf.certificate_bound = true;
    assert_eq!(
        set.resolve(&caf, None, today()).unwrap().id,
        "caf-quotient-familial"
    );
}

#[test]
fn me_warns_thirty_days_before_the_end() {
    let set = set_with(shipped());
    let emploi = persona("chercheur-emploi");
    let end = NaiveDate::from_ymd_opt(2027, 6, 30).unwrap();
    let warning_on = |day: NaiveDate| {
        passerelle::policy::explain::views(&set, &emploi, None, day)[0]
            .warning
            .clone()
    };
    assert_eq!(warning_on(end - chrono::Days::new(31)), None);
    let soon = warning_on(end - chrono::Days::new(30)).unwrap();
    assert!(
        soon.contains("2027-06-30") && soon.contains("30 days left"),
        "{soon}"
    );
    assert!(warning_on(end).unwrap().contains("0 days left"));
    assert!(
        warning_on(end + chrono::Days::new(1))
            .unwrap()
            .contains("expired")
    );
}

/// `docs/policies.md` quotes the shipped demo set's version: it must be the one the demo ships.
#[test]
fn the_docs_quote_the_shipped_demo_version() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/policies.md")).unwrap();
    let version = set_with(shipped()).version;
    let quoted = docs
        .split("the shipped demo set")
        .nth(1)
        .and_then(|rest| rest.split('`').nth(1))
        .expect("docs/policies.md names the shipped demo set's version");
    assert_eq!(quoted, version, "update docs/policies.md");
}

/// `passerelle check` and a submitted version warn (without refusing) on a pseudonymisation
/// domain shared by habilitations of different projects, and on a habilitation that can look
/// a dataset up by clear key and receive that key's pseudonyms (a re-identification table).
#[test]
fn check_warns_on_shared_domains_and_reidentification_tables() {
    let dir = Path::new("policies");
    assert!(
        set_with(shipped()).warnings(dir).is_empty(),
        "the demo set is clean"
    );

    let mut shared = shipped();
    shared.habilitations = shared.habilitations.replace(
        "pseudonymisation_domain = \"projet-emploi\"",
        "pseudonymisation_domain = \"projet-diabete\"",
    );
    let warnings: Vec<String> = set_with(shared)
        .warnings(dir)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("policies/habilitations.toml:")
            && warnings[0]
                .contains("`projet-diabete` and `projet-emploi` share the pseudonymisation domain"),
        "{warnings:?}"
    );

    let mut table = shipped();
    table.rules.push_str(
        "p, caf-quotient-familial, fiscal.revenus, *, query, allow, -\n\
         p, caf-quotient-familial, fiscal.revenus, nir, read, allow, pseudonymise\n\
         p, caf-quotient-familial, fiscal.revenus, annee, read, allow, clear\n",
    );
    let warnings: Vec<String> = set_with(table)
        .warnings(dir)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("habilitation `caf-quotient-familial` looks `")
            && warnings[0].contains("up by clear `nir`")
            && warnings[0].contains("pseudonymised in `fiscal.revenus`"),
        "{warnings:?}"
    );
}

/// Issuer binding of member rules: with several trusted issuers able to assert what a rule
/// uses, the rule must name one (else the set is refused, naming the rule); a named issuer
/// must be trusted, and trusted for what the rule uses; a bound rule admits that issuer's
/// principals only (same subject and groups from another issuer: nothing).
#[test]
fn member_rules_are_bound_to_one_issuer() {
    use passerelle::policy::TrustedIssuer;
    let dir = Path::new("policies");
    let all = |name: &str| TrustedIssuer {
        name: name.into(),
        attributes: ["groups", "roles", "organisation", "idp", "email"]
            .iter()
            .map(|a| (*a).to_string())
            .collect(),
    };
    let none = |name: &str| TrustedIssuer {
        name: name.into(),
        attributes: Vec::new(),
    };
    let set = set_with(shipped());
    assert!(set.issuer_problems(dir, &[all("demo")]).is_empty());
    assert!(
        set.issuer_problems(dir, &[all("demo"), none("autre")])
            .is_empty()
    );
    let problems: Vec<String> = set
        .issuer_problems(dir, &[all("demo"), all("autre")])
        .iter()
        .map(ToString::to_string)
        .collect();
    // Every habilitation and the operators: each could be satisfied by both.
    assert_eq!(problems.len(), 8, "{problems:#?}");
    assert!(
        problems
            .iter()
            .all(|p| p.contains("several trusted issuers"))
    );
    assert!(problems[0].contains("`[operators]`"), "{problems:#?}");

    // Named: no ambiguity; bound at admission.
    let mut named = shipped();
    named.habilitations = named
        .habilitations
        .replace("members = {", "members = { issuer = \"demo\",")
        .replace("[operators]\n", "[operators]\nissuer = \"demo\"\n");
    let bound = set_with(named.clone());
    assert!(
        bound
            .issuer_problems(dir, &[all("demo"), all("autre")])
            .is_empty()
    );
    let today = today();
    assert!(
        bound
            .resolve(&persona_of("chercheuse-diabete", "demo"), None, today)
            .is_ok()
    );
    assert!(
        bound
            .resolve(&persona_of("chercheuse-diabete", "autre"), None, today)
            .is_err(),
        "the same claims from another issuer hold nothing"
    );
    assert!(bound.is_operator(&persona_of("operateur", "demo")));
    assert!(!bound.is_operator(&persona_of("operateur", "autre")));

    // A named issuer that is not trusted, or not for what the rule uses.
    let problems: Vec<String> = bound
        .issuer_problems(dir, &[all("autre")])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        problems
            .iter()
            .all(|p| p.contains("issuer `demo` is not a trusted issuer"))
    );
    let problems: Vec<String> = bound
        .issuer_problems(dir, &[none("demo")])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("is not trusted to assert groups")),
        "{problems:#?}"
    );
}

/// Edits of the shipped files (insertions of what matters to TOML, CSV and the rule syntax,
/// deletions, cuts): validation answers every one with problems or a set, never a panic; a
/// problem names one of the four files; a set that validates validates again the same.
mod parser_properties {
    use proptest::prelude::*;

    use super::*;

    const SNIPPETS: &[&str] = &[
        "\n",
        ",",
        "\"",
        "'",
        "[",
        "]",
        "{",
        "}",
        "=",
        "#",
        "*",
        "-",
        "@",
        " ",
        "\\",
        "p, ",
        "deny",
        "allow",
        "read",
        "query",
        "lookup",
        "filter",
        "pseudonymise",
        "partial:",
        "round:",
        "year",
        "hide",
        "[[habilitations]]",
        "[[datasets]]",
        "é",
        "\u{0}",
        "9999-99-99",
        "region = '84' OR 1=1",
        "nir",
        "*",
        "projet-diabete",
        "members = {}",
    ];

    /// `text` with `edits` applied: (position, what: an index into SNIPPETS, or a deletion).
    fn edited(text: &str, edits: &[(usize, Option<usize>, usize)]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for &(at, insert, delete) in edits {
            let at = at % (chars.len() + 1);
            match insert {
                Some(i) => {
                    for (k, c) in SNIPPETS[i % SNIPPETS.len()].chars().enumerate() {
                        chars.insert(at + k, c);
                    }
                }
                None => {
                    let end = (at + delete).min(chars.len());
                    chars.drain(at..end);
                }
            }
        }
        chars.into_iter().collect()
    }

    fn edits() -> impl Strategy<Value = Vec<(usize, Option<usize>, usize)>> {
        proptest::collection::vec(
            (
                any::<usize>(),
                proptest::option::of(any::<usize>()),
                1usize..40,
            ),
            1..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn edited_policy_files_get_problems_or_a_set(
            file in 0usize..5,
            edits in edits(),
        ) {
            let mut texts = shipped();
            let target = match file {
                0 => &mut texts.rules,
                1 => &mut texts.habilitations,
                2 => &mut texts.datasets,
                3 => &mut texts.tables,
                _ => &mut texts.model,
            };
            *target = edited(target, &edits);
            match PolicySet::from_texts(Path::new("policies"), texts.clone()) {
                Ok(set) => {
                    let again = PolicySet::from_texts(Path::new("policies"), texts).unwrap();
                    prop_assert_eq!(set.version, again.version);
                }
                Err(problems) => {
                    prop_assert!(!problems.is_empty());
                    for p in &problems {
                        let name = p.file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        prop_assert!(
                            ["policy.csv", "habilitations.toml", "datasets.toml", "tables.toml", "model.conf", "policies"].contains(&name),
                            "{p}"
                        );
                    }
                }
            }
        }

        #[test]
        fn edited_configurations_get_problems_or_a_config(edits in edits()) {
            let text = std::fs::read_to_string(hub().layout().config()).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("passerelle.toml");
            std::fs::write(&file, edited(&text, &edits)).unwrap();
            if let Err(e) = passerelle::config::Config::load(&file) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

/// Every (habilitation, dataset, act, column) decision of a set, one per line, as a plan
/// holds them: what the demo's documented truth table (`tests/fixtures/demo-access.txt`)
/// holds.
fn access_table(set: &PolicySet) -> String {
    let mut out = String::new();
    for h in &set.habilitations.list {
        for d in set.evaluate(h, None) {
            let yes = |b: bool| if b { "allow" } else { "deny" };
            let name = d.name();
            let id = &h.id;
            // What a plan holds: a dataset the habilitation cannot use has no columns.
            if !d.accessible() {
                out += &format!("{id} {name}: no access\n");
                continue;
            }
            out += &format!("{id} {name} query: {}\n", yes(d.query_allowed()));
            out += &format!("{id} {name} aggregate: {}\n", yes(d.aggregates_allowed()));
            let lookup = d
                .lookup_key()
                .map_or("deny".into(), |k| format!("allow by {k}"));
            out += &format!("{id} {name} lookup: {lookup}\n");
            for f in d.row_filters() {
                out += &format!("{id} {name} filter: {}\n", f.source());
            }
            for c in d.columns() {
                out += &format!("{id} {name} read {}: {}\n", c.name(), c.treatment().label());
            }
        }
    }
    out
}

/// The truth table of the demo hub: every habilitation × dataset × act × column, decided
/// through the policy in force, equals the table written down in `tests/fixtures` (made
/// before the demo policy was rewritten with a profile, a dataset group and a pattern: the
/// plans of every persona stay exactly what they were). `PASSERELLE_BLESS=1` rewrites it.
#[test]
fn the_demo_truth_table_is_the_documented_one() {
    let table = access_table(&set_with(shipped()));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/demo-access.txt");
    if std::env::var_os("PASSERELLE_BLESS").is_some() {
        std::fs::write(&path, &table).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    for (line, (ours, theirs)) in table.lines().zip(expected.lines()).enumerate() {
        assert_eq!(ours, theirs, "demo-access.txt:{}", line + 1);
    }
    assert_eq!(table.lines().count(), expected.lines().count());
    assert!(table.lines().count() > 60);
}

/// Explain names inherited rules with the chain they came through: the NIR of projet-diabete
/// is pseudonymised by its profile's rule on a dataset group.
#[test]
fn explain_names_inherited_rules_with_their_chain() {
    let set = set_with(shipped());
    let p = persona("chercheuse-diabete");
    let plan = set.plan(&p, set.resolve(&p, None, today()).unwrap());
    let csv: Vec<&str> = include_str!("../../policies/policy.csv").lines().collect();
    let line_of = |text: &str| csv.iter().position(|l| *l == text).unwrap() + 1;
    for dataset in ["sante.sejours", "fiscal.revenus"] {
        let nir = plan
            .dataset(dataset)
            .unwrap()
            .columns()
            .iter()
            .find(|c| c.name() == "nir")
            .unwrap();
        let reason = &nir.reasons()[0];
        assert_eq!(
            reason.text,
            "p, profil-recherche-sante, donnees-appariables, nir, read, allow, pseudonymise"
        );
        let shown = reason.to_string();
        let g = line_of("g, projet-diabete, profil-recherche-sante");
        let g2 = line_of(&format!("g2, {dataset}, donnees-appariables"));
        assert!(
            shown.contains(&format!(
                "via g projet-diabete → profil-recherche-sante (policy.csv:{g})"
            )) && shown.contains(&format!(
                "via g2 {dataset} → donnees-appariables (policy.csv:{g2})"
            )),
            "{shown}"
        );
        let json = serde_json::to_value(reason).unwrap();
        assert_eq!(json["via"][0]["relation"], "g");
        assert_eq!(
            json["via"][0]["names"],
            json!(["projet-diabete", "profil-recherche-sante"])
        );
        assert_eq!(json["via"][1]["lines"], json!([g2]));
    }
    // The habilitation's own rule beats its profile's: the date of birth is generalised.
    let text = passerelle::policy::explain::render_text(&set, &p, None, today());
    assert!(
        text.contains("date generalised to the year")
            && text.contains("via g projet-diabete → profil-recherche-sante"),
        "{text}"
    );
    // Rules that apply without inheritance carry no chain.
    let nom = plan
        .dataset("sante.sejours")
        .unwrap()
        .columns()
        .iter()
        .find(|c| c.name() == "nom")
        .unwrap();
    assert!(nom.reasons()[0].via.is_empty());
}

/// A change to a profile shows, in the dry-run diff, every habilitation it changes; the same
/// change made only on a habilitation's own rules shows that habilitation only.
#[test]
fn changing_a_profile_shows_every_habilitation_it_changes() {
    let old = set_with(shipped());
    let mut texts = shipped();
    texts.rules = texts.rules.replace(
        "p, profil-recherche-sante, donnees-appariables, nir, read, allow, pseudonymise",
        "p, profil-recherche-sante, donnees-appariables, nir, read, allow, redact",
    );
    let new = set_with(texts);
    let changes = passerelle::policy::diff::diff(&old, &new);
    let changed: std::collections::BTreeSet<(&str, &str)> = changes
        .iter()
        .map(|c| (c.habilitation.as_str(), c.what.as_str()))
        .collect();
    for (h, what) in [
        (
            "projet-diabete",
            "sante.sejours: column nir from pseudonymised (domain projet-diabete) to redacted",
        ),
        (
            "projet-diabete",
            "fiscal.revenus: column nir from pseudonymised (domain projet-diabete) to redacted",
        ),
        (
            "projet-emploi",
            "sante.sejours: column nir from pseudonymised (domain projet-emploi) to redacted",
        ),
        (
            "projet-expire",
            "sante.sejours: column nir from pseudonymised (domain projet-expire) to redacted",
        ),
    ] {
        assert!(
            changed.contains(&(h, what)),
            "{h}: {what} not in {changes:#?}"
        );
    }
    assert_eq!(changes.len(), 4, "{changes:#?}");
    assert!(changes.iter().all(|c| c.kind == "changes"));

    // Leaving the profile: projet-emploi loses the stays, and nobody else changes.
    let mut texts = shipped();
    texts.rules = texts
        .rules
        .replace("g, projet-emploi, profil-recherche-sante\n", "");
    let changes = passerelle::policy::diff::diff(&old, &set_with(texts));
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.habilitation.as_str(), c.kind, c.what.as_str()))
            .collect::<Vec<_>>(),
        vec![("projet-emploi", "loses", "dataset sante.sejours")]
    );
}

/// Several gateways share one policy folder (issue #24): an apply on one is served by another
/// within its watch interval; a gateway that has not seen the change yet cannot overwrite it
/// (a conflict: nothing written, it then serves the folder's set); two applies from the same
/// version at once: exactly one wins.
#[tokio::test]
async fn gateways_sharing_a_policy_folder_never_both_win() {
    use passerelle::policy::{ApplyError, PolicyStore};
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("policies");
    shipped().write(&dir).unwrap();
    let (a, b) = (
        PolicyStore::load(&dir).unwrap(),
        PolicyStore::load(&dir).unwrap(),
    );
    let watching = PolicyStore::load(&dir).unwrap();
    watching.spawn_watch(Duration::from_millis(50));
    let variant = |tag: &str| {
        let mut texts = shipped();
        texts.habilitations.push_str(&format!("\n# {tag}\n"));
        texts
    };
    let v1 = a.current().version.clone();

    a.apply(variant("two")).await.unwrap();
    let v2 = variant("two").version();
    assert_eq!(a.current().version, v2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while watching.current().version != v2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the other gateway never served the new version"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // B still serves v1: its apply is based on it, and refused.
    assert_eq!(b.current().version, v1);
    match b.apply(variant("three")).await {
        Err(ApplyError::Conflict { based_on, found }) => {
            assert_eq!((based_on, found), (v1, v2.clone()));
        }
        other => panic!("a stale apply was not refused: {other:?}"),
    }
    assert_eq!(
        PolicyTexts::read(&dir).unwrap().version(),
        v2,
        "nothing written"
    );
    assert_eq!(
        b.current().version,
        v2,
        "the refused gateway serves the folder's set"
    );

    // Both at v2, both apply at once: one wins, the other is a conflict naming the winner.
    let (from_a, from_b) = tokio::join!(a.apply(variant("from-a")), b.apply(variant("from-b")));
    let winner = match (&from_a, &from_b) {
        (Ok(_), Err(ApplyError::Conflict { found, .. })) => {
            assert_eq!(*found, variant("from-a").version());
            variant("from-a").version()
        }
        (Err(ApplyError::Conflict { found, .. }), Ok(_)) => {
            assert_eq!(*found, variant("from-b").version());
            variant("from-b").version()
        }
        other => panic!("two applies from one version must not both win: {other:?}"),
    };
    assert_eq!(PolicyTexts::read(&dir).unwrap().version(), winner);
    assert_eq!(a.current().version, winner);
    assert_eq!(b.current().version, winner);
}

/// A place whose reads fail while `failing` is set, and whose stamp the test moves.
#[derive(Debug)]
struct FlakyPlace {
    texts: std::sync::Mutex<passerelle::policy::PolicyTexts>,
    failing: std::sync::atomic::AtomicBool,
    stamp: std::sync::atomic::AtomicU64,
}

impl passerelle::policy::SetPlace for FlakyPlace {
    fn name(&self) -> &std::path::Path {
        std::path::Path::new("flaky")
    }
    fn recover(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn read(&self) -> passerelle::policy::Seen {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(vec![passerelle::policy::Problem::new(
                std::path::Path::new("flaky"),
                None,
                "did not answer",
            )]);
        }
        Ok(self.texts.lock().unwrap().clone())
    }
    fn write_if(
        &self,
        _: &passerelle::policy::PolicyTexts,
        _: &mut dyn FnMut(&passerelle::policy::Seen) -> bool,
    ) -> std::io::Result<bool> {
        Ok(false)
    }
    fn reads_may_fail_alone(&self) -> bool {
        true
    }
    fn stamp(&self) -> String {
        self.stamp
            .load(std::sync::atomic::Ordering::SeqCst)
            .to_string()
    }
}

/// The watcher reads a changed set again after a read that failed (a bucket that did not
/// answer once): a gateway never stays behind on a set the others moved past until the next
/// change.
#[tokio::test]
async fn a_watched_set_whose_read_failed_is_read_again() {
    use std::sync::atomic::Ordering::SeqCst;
    let texts = passerelle::policy::PolicyTexts::read(&hub().root.join("policies")).unwrap();
    let place = std::sync::Arc::new(FlakyPlace {
        texts: std::sync::Mutex::new(texts.clone()),
        failing: false.into(),
        stamp: 0.into(),
    });
    let store = passerelle::policy::PolicyStore::load_in(place.clone(), None, None, None).unwrap();
    store.spawn_watch(Duration::from_millis(50));
    let mut next = texts.clone();
    next.rules.push_str("\n# moved on\n");
    // The set changes while its reads fail: the store keeps its set...
    place.failing.store(true, SeqCst);
    *place.texts.lock().unwrap() = next.clone();
    place.stamp.store(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.current().version, texts.version());
    // ...and serves the new one once a read works, though the stamp moved no more.
    place.failing.store(false, SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.current().version != next.version() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the changed set was never read again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
