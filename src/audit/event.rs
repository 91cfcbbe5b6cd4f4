//! What one audit record says: who, under which habilitation, did what to which columns, and
//! what came of it. Never result values, tokens or raw identifiers.
//!
//! Every field is plain data the caller already holds after its decision; nothing here asks for
//! a bearer token, a claim set or a raw identifier. The only identifier-like field, the lookup
//! key, is an [`AuditKey`]: a pseudonym the caller computed in the audit-only domain, and
//! [`AuditKey::new`] refuses strings that look like a raw NIR or a JWT.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Longest SQL text kept in a record, in bytes; longer texts are cut and marked truncated.
pub const MAX_SQL_BYTES: usize = 8 * 1024;

/// One audit event, as handed to [`super::AuditLog::record`]. Written as one JSON line, with
/// the record's `seq` and `prev` in front of these fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When the decision was taken (RFC 3339, UTC, milliseconds).
    #[serde(with = "rfc3339_millis")]
    pub time: DateTime<Utc>,
    /// The request id (the `x-request-id` the client sees), or an operator-side id.
    pub request_id: String,
    pub kind: AuditKind,
    /// Who asked; absent when no token could be accepted (`auth_refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<AuditPrincipal>,
    /// Under which habilitation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub habilitation: Option<AuditHabilitation>,
    /// What was asked, e.g. `POST /v1/query`.
    pub action: String,
    /// For work that runs after its decision (queries): `decision`, recorded durably before
    /// anything runs, then `outcome`, recorded when it ends whatever the way. Absent for
    /// requests answered at once (one record each).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<AuditStage>,
    /// Datasets, columns and treatments touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<DatasetAccess>,
    /// SQL text, bounded to [`MAX_SQL_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<SqlText>,
    /// Lookup traceability (tell-us-once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup: Option<LookupTrace>,
    /// Pseudonymisation key versions used to answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_versions: Vec<KeyVersion>,
    pub outcome: Outcome,
    /// Machine-readable reason code (e.g. `forbidden_column`, `token_expired`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub rows: u64,
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub duration_ms: u64,
    /// Version of the policy set the decision was taken under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

/// What kind of request or operation an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    Query,
    Lookup,
    Datasets,
    Me,
    Admin,
    AuthRefused,
    PolicyChange,
    PolicyReload,
    /// Written by the trail itself when it can be written again after an outage: from when
    /// to when it was unavailable (every request refused meanwhile).
    AuditUnavailable,
}

/// Which of the two records of a long request an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditStage {
    /// Who asks what, under which habilitation and policy: written before any work starts.
    Decision,
    /// What came of it (rows, bytes, error, client gone): written when the work ends.
    Outcome,
}

/// How the request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    Refused,
    Error,
}

/// The authenticated principal (never its token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPrincipal {
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    pub subject: String,
    /// SIRET of the principal's organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
}

/// The habilitation a request was served under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHabilitation {
    pub id: String,
    pub legal_basis: String,
    pub purpose: String,
}

/// One dataset touched, with its columns and the treatment each was served with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetAccess {
    pub dataset: String,
    #[serde(default)]
    pub columns: Vec<ColumnAccess>,
}

/// One column touched and its treatment (`clear`, `pseudonymise`, `year`, `partial:4`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnAccess {
    pub column: String,
    pub treatment: String,
}

/// SQL text, cut at [`MAX_SQL_BYTES`] (on a character boundary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqlText {
    pub text: String,
    /// True when `text` is only the beginning of the query.
    #[serde(default)]
    pub truncated: bool,
    /// Length of the whole query, in bytes.
    pub bytes: usize,
}

impl SqlText {
    /// Keeps at most [`MAX_SQL_BYTES`] of `sql`.
    pub fn bounded(sql: &str) -> Self {
        let mut text = sql.to_string();
        let mut truncated = false;
        cut(&mut text, MAX_SQL_BYTES, &mut truncated);
        Self {
            text,
            truncated,
            bytes: sql.len(),
        }
    }

    /// Re-applies the bound (a caller may have built the struct by hand).
    pub(crate) fn enforce_bound(&mut self) {
        let mut truncated = self.truncated;
        cut(&mut self.text, MAX_SQL_BYTES, &mut truncated);
        self.truncated = truncated;
    }
}

fn cut(text: &mut String, max: usize, truncated: &mut bool) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    *truncated = true;
}

/// Lookup traceability: why, for whom and about what a record was looked up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupTrace {
    /// The procedure the lookup serves (e.g. a case number or a procedure code).
    pub context: String,
    /// Who receives the answer (administration, service).
    pub recipient: String,
    /// What is looked up (e.g. `revenus-fiscaux`).
    pub object: String,
    /// The looked-up key, pseudonymised by the caller in the audit-only domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<AuditKey>,
    /// The keys of a batch lookup, in order, pseudonymised like `key`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<AuditKey>,
}

/// A pseudonymisation key version used to answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVersion {
    pub domain: String,
    pub version: u32,
}

/// A lookup key already pseudonymised in the audit-only domain. The audit module never sees a
/// raw identifier: [`AuditKey::new`] refuses what looks like a raw NIR (13 to 15 digits, with or
/// without spaces) or a bearer token (a JWT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditKey(String);

/// Why a string was refused as an [`AuditKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditKeyError {
    #[error("audit key is empty or longer than 128 bytes")]
    Length,
    #[error("audit key looks like a raw identifier (digits only): pseudonymise it first")]
    RawIdentifier,
    #[error("audit key looks like a token: tokens are never audited")]
    Token,
}

impl AuditKey {
    /// Wraps a pseudonym (e.g. `Domain::pseudonymise` of the audit-only domain).
    pub fn new(pseudonym: impl Into<String>) -> Result<Self, AuditKeyError> {
        let value = pseudonym.into();
        if value.is_empty() || value.len() > 128 {
            return Err(AuditKeyError::Length);
        }
        let digits = value.bytes().filter(u8::is_ascii_digit).count();
        let only_digits_and_spaces = value.bytes().all(|b| b.is_ascii_digit() || b == b' ');
        // SECURITY: a NIR has 13 digits plus a 2-digit key; refuse anything that shape.
        if only_digits_and_spaces && digits >= 10 {
            return Err(AuditKeyError::RawIdentifier);
        }
        if value.starts_with("eyJ") || value.matches('.').count() >= 2 {
            return Err(AuditKeyError::Token);
        }
        Ok(Self(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AuditEvent {
    /// An event of `kind` for `request_id`, timed now, outcome `allowed`, everything else empty.
    pub fn new(kind: AuditKind, request_id: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            time: Utc::now(),
            request_id: request_id.into(),
            kind,
            principal: None,
            habilitation: None,
            action: action.into(),
            stage: None,
            datasets: Vec::new(),
            sql: None,
            lookup: None,
            key_versions: Vec::new(),
            outcome: Outcome::Allowed,
            reason: None,
            rows: 0,
            bytes: 0,
            duration_ms: 0,
            policy_version: None,
        }
    }

    /// Sets the SQL text, bounded to [`MAX_SQL_BYTES`].
    pub fn with_sql(mut self, sql: &str) -> Self {
        self.sql = Some(SqlText::bounded(sql));
        self
    }

    /// Sets the outcome and its reason code.
    pub fn with_outcome(mut self, outcome: Outcome, reason: Option<&str>) -> Self {
        self.outcome = outcome;
        self.reason = reason.map(str::to_string);
        self
    }
}

/// RFC 3339 in UTC with milliseconds and a `Z`, e.g. `2025-03-01T12:00:00.123Z`.
pub(crate) mod rfc3339_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// `time` formatted as in records and heads.
pub(crate) fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_is_bounded_on_a_char_boundary() {
        let long = "é".repeat(MAX_SQL_BYTES);
        let sql = SqlText::bounded(&long);
        assert!(sql.truncated);
        assert!(sql.text.len() <= MAX_SQL_BYTES);
        assert_eq!(sql.bytes, long.len());
        let short = SqlText::bounded("SELECT 1");
        assert!(!short.truncated);
    }

    #[test]
    fn raw_identifiers_and_tokens_are_refused_as_keys() {
        assert_eq!(
            AuditKey::new("185057800608436"),
            Err(AuditKeyError::RawIdentifier)
        );
        assert_eq!(
            AuditKey::new("1 85 05 78 006 084 36"),
            Err(AuditKeyError::RawIdentifier)
        );
        assert_eq!(
            AuditKey::new("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"),
            Err(AuditKeyError::Token)
        );
        assert!(AuditKey::new("Qm9uam91ciBsZSBtb25kZQ").is_ok());
    }

    #[test]
    fn event_serialises_without_empty_fields() {
        let event = AuditEvent::new(AuditKind::AuthRefused, "r1", "POST /v1/query")
            .with_outcome(Outcome::Refused, Some("token_expired"));
        let json = serde_json::to_string(&event).unwrap_or_default();
        assert!(json.contains("\"kind\":\"auth_refused\""), "{json}");
        assert!(json.contains("\"outcome\":\"refused\""), "{json}");
        assert!(!json.contains("principal"), "{json}");
        assert!(json.contains('Z'), "{json}");
        let back: AuditEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back.request_id, "r1");
    }
}
