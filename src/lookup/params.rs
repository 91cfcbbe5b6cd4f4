//! Traceability parameters of a lookup (`context`, `recipient`, `object`) and key validation.
//!
//! As French data-exchange APIs require (API Particulier, API Entreprise): `recipient` is the
//! SIRET of the organisation the data is for (14 digits, valid Luhn key — La Poste's
//! establishments, SIREN 356000000, use the digit-sum-multiple-of-5 rule), `object` says why
//! (1 to 49 characters, e.g. a case number), `context` the procedure (1 to 100 characters).

use serde::Deserialize;

use crate::policy::Field;

/// The raw parameters as sent.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TraceabilityParams {
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default)]
    pub recipient: Option<String>,
    #[serde(default)]
    pub object: Option<String>,
}

/// Checked traceability parameters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Traceability {
    pub context: String,
    pub recipient: String,
    pub object: String,
}

/// A missing or invalid parameter: a stable code per parameter and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    pub code: &'static str,
    pub message: String,
}

fn problem(code: &'static str, message: impl Into<String>) -> ParamError {
    ParamError {
        code,
        message: message.into(),
    }
}

/// True for a printable text of `min..=max` characters (no control characters).
fn printable(text: &str, min: usize, max: usize) -> bool {
    let n = text.chars().count();
    (min..=max).contains(&n) && !text.chars().any(char::is_control) && !text.trim().is_empty()
}

impl TraceabilityParams {
    pub fn check(&self) -> Result<Traceability, ParamError> {
        let context = match self.context.as_deref() {
            None | Some("") => return Err(problem("context_missing", "`context` is required")),
            Some(c) if !printable(c, 1, 100) => {
                return Err(problem(
                    "context_invalid",
                    "`context` must be 1 to 100 printable characters",
                ));
            }
            Some(c) => c.to_string(),
        };
        let recipient = match self.recipient.as_deref() {
            None | Some("") => {
                return Err(problem(
                    "recipient_missing",
                    "`recipient` (a SIRET) is required",
                ));
            }
            Some(r) if !is_siret(r) => {
                return Err(problem(
                    "recipient_invalid",
                    "`recipient` must be a valid SIRET (14 digits with a valid check key)",
                ));
            }
            Some(r) => r.to_string(),
        };
        let object = match self.object.as_deref() {
            None | Some("") => return Err(problem("object_missing", "`object` is required")),
            Some(o) if !printable(o, 1, 49) => {
                return Err(problem(
                    "object_invalid",
                    "`object` must be 1 to 49 printable characters",
                ));
            }
            Some(o) => o.to_string(),
        };
        Ok(Traceability {
            context,
            recipient,
            object,
        })
    }
}

pub use crate::policy::habilitation::is_siret;

/// Checks a lookup key against its column's Table Schema: never empty, no wildcard or range
/// characters, at most 256 bytes, and the column's `pattern` and `enum` when it has them.
pub fn check_key(key: &str, field: &Field) -> Result<(), ParamError> {
    let invalid = || {
        problem(
            "key_invalid",
            format!("the key is not a valid `{}`", field.name.get_ref()),
        )
    };
    // SECURITY: no enumeration: empty, wildcard, range or prefix forms are never keys.
    if key.is_empty()
        || key.len() > 256
        || key
            .chars()
            .any(|c| c.is_control() || matches!(c, '*' | '%' | '?' | '_' | '[' | ']'))
        || key.contains("..")
        || key.trim() != key
    {
        return Err(invalid());
    }
    let constraints = &field.constraints;
    if let Some(pattern) = &constraints.pattern {
        // Table Schema patterns match the whole value (compiled once, see the catalog).
        let re = crate::policy::table_schema_pattern(pattern).map_err(|_| invalid())?;
        if !re.is_match(key) {
            return Err(invalid());
        }
    }
    if let Some(values) = &constraints.enumeration
        && !values.iter().any(|v| v == key)
    {
        return Err(invalid());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sirets_need_fourteen_digits_and_a_luhn_key() {
        assert!(is_siret("13000170500016"));
        assert!(is_siret("18003502400017"));
        assert!(!is_siret("13000170500017"));
        assert!(!is_siret("1300017050001"));
        assert!(!is_siret("1300017050001a"));
        assert!(!is_siret(""));
        assert!(is_siret("35600000000001"), "La Poste: digit sum 15");
    }

    #[test]
    fn traceability_codes_name_the_parameter() {
        let ok = TraceabilityParams {
            context: Some("Calcul du QF".into()),
            recipient: Some("13000170500016".into()),
            object: Some("dossier 42".into()),
        };
        assert!(ok.check().is_ok());
        let code = |p: TraceabilityParams| p.check().unwrap_err().code;
        assert_eq!(
            code(TraceabilityParams {
                context: None,
                ..ok.clone()
            }),
            "context_missing"
        );
        assert_eq!(
            code(TraceabilityParams {
                recipient: None,
                ..ok.clone()
            }),
            "recipient_missing"
        );
        assert_eq!(
            code(TraceabilityParams {
                object: None,
                ..ok.clone()
            }),
            "object_missing"
        );
        assert_eq!(
            code(TraceabilityParams {
                recipient: Some("13000170500017".into()),
                ..ok.clone()
            }),
            "recipient_invalid"
        );
        assert_eq!(
            code(TraceabilityParams {
                object: Some("x".repeat(50)),
                ..ok.clone()
            }),
            "object_invalid"
        );
        assert_eq!(
            code(TraceabilityParams {
                context: Some("a\nb".into()),
                ..ok.clone()
            }),
            "context_invalid"
        );
    }
}
