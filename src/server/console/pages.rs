//! The console's pages: one askama template per page (escaped by default), rendered with the
//! headers every page carries (a strict Content-Security-Policy without any script,
//! `frame-ancestors 'none'`, no caching, no referrer).
//!
//! Must never: put a token, a key or a hub path in a page; allow inline script or style.

use askama::Template;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use crate::gateway::{AuditRow, Change, HabilitationRow, SignedInView, TableRow};

/// The Content-Security-Policy of every console page: the page's own stylesheet, nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A rendered page with its status and the console's headers.
pub fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => with_headers((status, Html(html)).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "a console page could not be rendered");
            with_headers(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Html("<!doctype html><title>Erreur</title><p>Erreur interne.</p>".to_string()),
                )
                    .into_response(),
            )
        }
    }
}

/// The console's security headers on any answer.
pub fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The header of every page: who is signed in, and the form token of the sign-out.
pub struct Frame {
    pub who: Option<SignedInView>,
    pub csrf: String,
    pub section: &'static str,
}

impl Frame {
    pub fn anonymous() -> Self {
        Self {
            who: None,
            csrf: String::new(),
            section: "",
        }
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
pub struct Message {
    pub frame: Frame,
    pub heading: String,
    pub text: String,
    /// `info`, `success` or `error`.
    pub tone: &'static str,
    pub link: Option<(String, String)>,
}

impl Message {
    pub fn new(frame: Frame, heading: &str, text: &str, tone: &'static str) -> Self {
        Self {
            frame,
            heading: heading.into(),
            text: text.into(),
            tone,
            link: None,
        }
    }

    pub fn link(mut self, href: &str, label: &str) -> Self {
        self.link = Some((href.into(), label.into()));
        self
    }
}

#[derive(Template)]
#[template(path = "console/signed_in.html")]
pub struct SignedInPage {
    pub to: String,
}

#[derive(Template)]
#[template(path = "console/home.html")]
pub struct Home {
    pub frame: Frame,
    pub policy: crate::gateway::PolicyInForce,
    pub loaded_at: String,
    pub files: Vec<(String, String)>,
}

/// One row of the history.
pub struct VersionRow {
    pub number: u64,
    pub version: String,
    pub author: String,
    pub comment: String,
    pub submitted: String,
    pub applied: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/versions.html")]
pub struct Versions {
    pub frame: Frame,
    pub in_force: String,
    pub versions: Vec<VersionRow>,
}

/// A problem found in a file, at a line when it has one.
pub struct FileProblem {
    pub line: Option<usize>,
    pub message: String,
    /// The text of that line, shown under the problem.
    pub excerpt: String,
}

/// One policy file in the editor, with its problems.
pub struct EditedFile {
    pub name: String,
    pub anchor: String,
    pub text: String,
    pub problems: Vec<FileProblem>,
}

impl EditedFile {
    /// The textarea's height: the file's lines, within bounds.
    pub fn rows(&self) -> usize {
        self.text.lines().count().clamp(4, 30) + 1
    }
}

#[derive(Template)]
#[template(path = "console/edit.html")]
pub struct Edit {
    pub frame: Frame,
    pub comment: String,
    pub files: Vec<EditedFile>,
    /// Problems that name no file of the set.
    pub general: Vec<String>,
    pub problem_count: usize,
}

/// One line of an access delta.
pub struct DeltaRow {
    pub habilitation: String,
    pub kind: String,
    pub what: String,
    /// Who the habilitation admits (its members rule), when known.
    pub concerned: String,
}

impl DeltaRow {
    pub fn label(&self) -> &'static str {
        match self.kind.as_str() {
            "gains" => "gagne",
            "loses" => "perd",
            _ => "change",
        }
    }
}

impl DeltaRow {
    /// A change with who it concerns (`concerned`: members rule by habilitation).
    pub fn of(c: &Change, concerned: &std::collections::BTreeMap<String, String>) -> Self {
        Self {
            habilitation: c.habilitation.clone(),
            kind: c.kind.to_string(),
            what: c.what.clone(),
            concerned: concerned.get(&c.habilitation).cloned().unwrap_or_default(),
        }
    }
}

impl From<&Change> for DeltaRow {
    fn from(c: &Change) -> Self {
        Self::of(c, &Default::default())
    }
}

#[derive(Template)]
#[template(path = "console/preview.html")]
pub struct Preview {
    pub frame: Frame,
    pub just_stored: bool,
    pub number: u64,
    pub version: String,
    pub author: String,
    pub comment: String,
    pub in_force: String,
    pub warnings: Vec<String>,
    pub delta: Vec<DeltaRow>,
    /// `policy.approvals`.
    pub approvals_needed: usize,
    /// Who approved, and when.
    pub approvals: Vec<String>,
    /// Put in force before: no approval needed to put it back.
    pub applied_before: bool,
    /// The viewer may approve it (not its author, not approved yet).
    pub can_approve: bool,
}

#[derive(Template)]
#[template(path = "console/applied.html")]
pub struct Applied {
    pub frame: Frame,
    pub number: u64,
    pub in_force: String,
    pub changed: bool,
    pub delta: Vec<DeltaRow>,
}

/// One consultation of the citizen's record, as the journal shows it.
pub struct JournalRow {
    pub time: String,
    pub organisation: String,
    pub habilitation: String,
    pub legal_basis: String,
    pub purpose: String,
    pub recipient: String,
    pub object: String,
    pub dataset: String,
    pub fields: String,
}

impl JournalRow {
    pub fn new(dataset: &str, c: crate::gateway::Consultation) -> Self {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
        let time = chrono::DateTime::parse_from_rfc3339(&c.time)
            .map(|t| when(&t.with_timezone(&chrono::Utc)))
            .unwrap_or(c.time);
        Self {
            time,
            organisation: c
                .organisation
                .map_or_else(|| "—".into(), |s| format!("SIRET {s}")),
            habilitation: or_dash(c.habilitation),
            legal_basis: or_dash(c.legal_basis),
            purpose: or_dash(c.context),
            recipient: or_dash(c.recipient),
            object: or_dash(c.object),
            dataset: dataset.to_string(),
            fields: c.fields.join(", "),
        }
    }
}

#[derive(Template)]
#[template(path = "console/journal.html")]
pub struct JournalPage {
    pub csrf: String,
    pub rows: Vec<JournalRow>,
}

/// A habilitation's row, with its validity in words.
pub struct HabilitationLine(pub HabilitationRow);

impl std::ops::Deref for HabilitationLine {
    type Target = HabilitationRow;
    fn deref(&self) -> &HabilitationRow {
        &self.0
    }
}

impl HabilitationLine {
    pub fn label(&self) -> &'static str {
        match self.0.validity {
            "active" => "en cours",
            "expiring" => "bientôt échue",
            "expired" => "échue",
            "not_started" => "pas encore commencée",
            "revoked" => "révoquée",
            _ => "remplacée",
        }
    }
}

#[derive(Template)]
#[template(path = "console/habilitations.html")]
pub struct Habilitations {
    pub frame: Frame,
    pub rows: Vec<HabilitationLine>,
    pub expiring: usize,
    pub expired: usize,
}

/// A table's row, with its state in words.
pub struct TableLine(pub TableRow);

impl std::ops::Deref for TableLine {
    type Target = TableRow;
    fn deref(&self) -> &TableRow {
        &self.0
    }
}

impl TableLine {
    pub fn label(&self) -> &'static str {
        match self.0.status {
            "published" => "publié",
            "pending" => "en calcul",
            "refused" => "refusé par l'audit",
            _ => "en échec",
        }
    }
}

#[derive(Template)]
#[template(path = "console/tables.html")]
pub struct Tables {
    pub frame: Frame,
    pub rows: Vec<TableLine>,
}

/// The fields of the "who sees what" form, as typed.
#[derive(Default)]
pub struct ExplainForm {
    pub issuer: String,
    pub sub: String,
    pub siret: String,
    pub groups: String,
    pub roles: String,
    pub habilitation: String,
}

#[derive(Template)]
#[template(path = "console/explain.html")]
pub struct Explain {
    pub frame: Frame,
    pub form: ExplainForm,
    pub answer: Option<String>,
    pub problem: Option<String>,
}

/// The audit search's fields, as typed.
#[derive(Default)]
pub struct AuditForm {
    pub from: String,
    pub to: String,
    pub habilitation: String,
    pub dataset: String,
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub struct Audit {
    pub frame: Frame,
    pub form: AuditForm,
    pub rows: Vec<AuditRow>,
    pub matched: usize,
    /// The trail's verification, when the search ran.
    pub verification: Option<Result<String, String>>,
    pub problem: Option<String>,
}

/// The time of an event, as the pages show it (UTC).
pub fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%d/%m/%Y %H:%M:%S UTC").to_string()
}

/// Splits the gateway's `file:line: message` problem lines per policy file.
pub fn problems_by_file(detail: &str, names: &[&str]) -> (Vec<(String, FileProblem)>, Vec<String>) {
    let mut placed = Vec::new();
    let mut general = Vec::new();
    for line in detail.lines().filter(|l| !l.trim().is_empty()) {
        let found = names.iter().find_map(|name| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let (number, message) = match rest.split_once(':') {
                Some((n, m)) if n.trim().parse::<usize>().is_ok() => {
                    (n.trim().parse::<usize>().ok(), m.trim())
                }
                _ => (None, rest.trim()),
            };
            Some((
                (*name).to_string(),
                FileProblem {
                    line: number,
                    message: message.to_string(),
                    excerpt: String::new(),
                },
            ))
        });
        match found {
            Some(p) => placed.push(p),
            None => general.push(line.to_string()),
        }
    }
    (placed, general)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_placed_in_their_file_at_their_line() {
        let (placed, general) = problems_by_file(
            "policy.csv:3: unknown act `raed`\ndatasets.toml: missing\nsubmission: `x` is not a policy file",
            &["policy.csv", "datasets.toml"],
        );
        assert_eq!(placed.len(), 2);
        assert_eq!(placed[0].0, "policy.csv");
        assert_eq!(placed[0].1.line, Some(3));
        assert_eq!(placed[0].1.message, "unknown act `raed`");
        assert_eq!(placed[1].1.line, None);
        assert_eq!(general, vec!["submission: `x` is not a policy file"]);
    }

    /// The console's pages and the citizen's journal share one skeleton: each keeps its own
    /// title, banner and footer, and only the console's has the operators' menu.
    #[test]
    fn console_and_journal_pages_keep_their_own_head_and_banner() {
        let console = Message::new(Frame::anonymous(), "Accès refusé", "Non.", "error")
            .render()
            .unwrap();
        assert!(console.contains("<title>Accès refusé — Console de passerelle</title>"));
        assert!(console.contains(r#"<a href="/console">Console de passerelle</a>"#));
        assert!(console.contains("Chaque action de cette console est inscrite"));
        let journal = JournalPage {
            csrf: "t".into(),
            rows: Vec::new(),
        }
        .render()
        .unwrap();
        assert!(journal.contains("<title>Qui a consulté mes données — passerelle</title>"));
        assert!(journal.contains(r#"action="/moi/deconnexion""#));
        assert!(!journal.contains("Menu principal"));
        assert!(journal.contains("chaque ouverture de ce journal"));
        for page in [&console, &journal] {
            assert!(page.contains(r#"<link rel="stylesheet" href="/console/static/console.css">"#));
            assert!(page.contains(r#"<main id="contenu" tabindex="-1">"#));
        }
    }
}
