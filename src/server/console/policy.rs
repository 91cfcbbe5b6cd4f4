//! The console's policy pages: the set in force, the history, a new version edited as its
//! files, its dry run, approvals, and putting a version in force (apply or rollback).
//!
//! Must never: put a version in force without the confirmation box, or decide anything itself
//! (the gateway's operator use cases do).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::POLICY_FILES;
use super::pages::{
    self, Applied, DeltaRow, Edit, EditedFile, Frame, Home, Message, Preview, VersionRow, Versions,
    page, when,
};
use super::{Operator, SignedForm, refused_page};
use crate::gateway::{PolicySubmission, PolicyTexts};
use crate::server::AppState;

/// `GET /console`: the policy set in force.
pub(super) async fn home(State(state): State<AppState>, operator: Operator) -> Response {
    match state.gateway.policy_in_force(&operator.caller).await {
        Ok(policy) => {
            let files = named_files(&policy.files);
            let frame = operator.frame(&state, "policy");
            page(
                StatusCode::OK,
                &Home {
                    frame,
                    loaded_at: when(&policy.loaded_at),
                    files,
                    policy,
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// The files of a set by name, in the editor's order (`tables.toml` even when empty).
fn named_files(texts: &PolicyTexts) -> Vec<(String, String)> {
    POLICY_FILES
        .iter()
        .map(|name| {
            let text = match *name {
                "policy.csv" => &texts.rules,
                "habilitations.toml" => &texts.habilitations,
                "datasets.toml" => &texts.datasets,
                "tables.toml" => &texts.tables,
                _ => &texts.model,
            };
            ((*name).to_string(), text.clone())
        })
        .collect()
}

/// `GET /console/versions`: the history.
pub(super) async fn versions(State(state): State<AppState>, operator: Operator) -> Response {
    match state.gateway.versions(&operator.caller).await {
        Ok(view) => {
            let frame = operator.frame(&state, "versions");
            let mut rows: Vec<VersionRow> = view
                .versions
                .iter()
                .map(|v| VersionRow {
                    number: v.number,
                    version: v.version.clone(),
                    author: v.author.clone(),
                    comment: v.comment.clone(),
                    submitted: when(&v.submitted_at),
                    applied: v
                        .applied
                        .iter()
                        .map(|(t, who)| format!("{} par {who}", when(t)))
                        .collect(),
                })
                .collect();
            rows.reverse();
            page(
                StatusCode::OK,
                &Versions {
                    frame,
                    in_force: view.in_force,
                    versions: rows,
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

fn editor(
    frame: Frame,
    comment: String,
    files: Vec<(String, String)>,
    detail: Option<&str>,
) -> Edit {
    let (placed, general) = detail
        .map(|d| pages::problems_by_file(d, &POLICY_FILES))
        .unwrap_or_default();
    let problem_count = placed.len() + general.len();
    let mut placed = placed;
    let files = files
        .into_iter()
        .map(|(name, text)| {
            let mut problems = Vec::new();
            placed.retain_mut(|(file, problem)| {
                if *file == name {
                    let excerpt = problem
                        .line
                        .and_then(|n| text.lines().nth(n.saturating_sub(1)))
                        .unwrap_or("")
                        .to_string();
                    problems.push(pages::FileProblem {
                        line: problem.line,
                        message: std::mem::take(&mut problem.message),
                        excerpt,
                    });
                    false
                } else {
                    true
                }
            });
            EditedFile {
                anchor: name.replace('.', "-"),
                name,
                text,
                problems,
            }
        })
        .collect();
    Edit {
        frame,
        comment,
        files,
        general,
        problem_count,
    }
}

/// `GET /console/versions/nouvelle`: the editor, filled with the set in force.
pub(super) async fn edit(State(state): State<AppState>, operator: Operator) -> Response {
    match state.gateway.policy_in_force(&operator.caller).await {
        Ok(policy) => {
            let frame = operator.frame(&state, "new");
            page(
                StatusCode::OK,
                &editor(frame, String::new(), named_files(&policy.files), None),
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `POST /console/versions`: validate and store; the dry run, or the editor with its
/// problems at their lines.
pub(super) async fn submit(
    State(state): State<AppState>,
    SignedForm {
        who: operator,
        fields: mut form,
    }: SignedForm<Operator>,
) -> Response {
    let comment = form.remove("comment").unwrap_or_default();
    // Browsers send text areas with CRLF line ends: the policy files keep LF.
    let files: Vec<(String, String)> = POLICY_FILES
        .iter()
        .map(|name| {
            let text = form.remove(*name).unwrap_or_default().replace("\r\n", "\n");
            ((*name).to_string(), text)
        })
        .collect();
    let submission = PolicySubmission {
        files: files
            .iter()
            .filter(|(name, text)| name != "tables.toml" || !text.trim().is_empty())
            .cloned()
            .collect(),
        comment: comment.clone(),
    };
    match state.gateway.submit(&operator.caller, submission).await {
        Ok(stored) => {
            let frame = operator.frame(&state, "new");
            page(
                StatusCode::CREATED,
                &Preview {
                    frame,
                    just_stored: true,
                    number: stored.version.number,
                    version: stored.version.version.clone(),
                    author: stored.version.author.clone(),
                    comment: stored.version.comment.clone(),
                    in_force: stored.in_force.clone(),
                    warnings: stored.warnings.clone(),
                    delta: stored
                        .diff
                        .iter()
                        .map(|c| DeltaRow::of(c, &stored.concerned))
                        .collect(),
                    approvals_needed: state.gateway.config().policy.approvals,
                    approvals: Vec::new(),
                    applied_before: false,
                    can_approve: false,
                },
            )
        }
        Err(e) if e.code == "policy_invalid" => {
            let frame = operator.frame(&state, "new");
            page(
                StatusCode::UNPROCESSABLE_ENTITY,
                &editor(frame, comment, files, Some(&e.detail)),
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `GET /console/versions/{number}`: a stored version's dry run, with the form that puts it
/// in force.
pub(super) async fn preview(
    State(state): State<AppState>,
    operator: Operator,
    Path(number): Path<u64>,
) -> Response {
    match state
        .gateway
        .preview_version(&operator.caller, number)
        .await
    {
        Ok(p) => {
            let frame = operator.frame(&state, "versions");
            let me = frame
                .who
                .as_ref()
                .map(|w| w.name.clone())
                .unwrap_or_default();
            let can_approve =
                p.version.author != me && p.version.approvals.iter().all(|(_, a)| *a != me);
            page(
                StatusCode::OK,
                &Preview {
                    approvals_needed: state.gateway.config().policy.approvals,
                    approvals: p
                        .version
                        .approvals
                        .iter()
                        .map(|(t, who)| format!("{who}, le {}", when(t)))
                        .collect(),
                    applied_before: !p.version.applied.is_empty(),
                    can_approve,
                    frame,
                    just_stored: false,
                    number,
                    version: p.version.version.clone(),
                    author: p.version.author.clone(),
                    comment: p.version.comment.clone(),
                    in_force: p.in_force.clone(),
                    warnings: Vec::new(),
                    delta: p
                        .diff
                        .iter()
                        .map(|c| DeltaRow::of(c, &p.concerned))
                        .collect(),
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `POST /console/versions/{number}/vigueur`: puts a stored version in force (an apply or a
/// rollback), once confirmed.
pub(super) async fn put_in_force(
    State(state): State<AppState>,
    Path(number): Path<u64>,
    SignedForm {
        who: operator,
        fields: form,
    }: SignedForm<Operator>,
) -> Response {
    if form.get("confirmer").map(String::as_str) != Some("oui") {
        let frame = operator.frame(&state, "versions");
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &Message::new(
                frame,
                "Confirmation manquante",
                "Cochez la case de confirmation pour mettre cette version en vigueur.",
                "error",
            )
            .link(
                &format!("/console/versions/{number}"),
                "Revenir à la version",
            ),
        );
    }
    match state.gateway.put_in_force(&operator.caller, number).await {
        Ok(view) => {
            let frame = operator.frame(&state, "versions");
            page(
                StatusCode::OK,
                &Applied {
                    frame,
                    number: view.number,
                    in_force: view.in_force.clone(),
                    changed: view.changed,
                    delta: view.diff.iter().map(DeltaRow::from).collect(),
                },
            )
        }
        Err(e) => refused_page(&e),
    }
}

/// `POST /console/versions/{number}/approbation`: the viewer's approval of a version.
pub(super) async fn approve(
    State(state): State<AppState>,
    Path(number): Path<u64>,
    SignedForm { who: operator, .. }: SignedForm<Operator>,
) -> Response {
    match state.gateway.approve(&operator.caller, number).await {
        Ok(_) => {
            let frame = operator.frame(&state, "versions");
            page(
                StatusCode::OK,
                &Message::new(
                    frame,
                    &format!("Version {number} approuvée"),
                    "Votre approbation est enregistrée. Un autre opérateur peut maintenant la mettre en vigueur.",
                    "success",
                )
                .link(&format!("/console/versions/{number}"), "Revenir à la version"),
            )
        }
        Err(e) => refused_page(&e),
    }
}
