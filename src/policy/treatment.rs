//! Column treatments: what a habilitation sees of a column.

use serde::{Deserialize, Serialize};

use super::catalog::FieldType;

/// A treatment as written in a `read` rule (`clear`, `pseudonymise`, `partial:4`, …).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TreatmentSpec {
    Clear,
    Pseudonymise,
    Redact,
    Partial { keep_last: u8 },
    Year,
    Month,
    Departement,
    Round { base: f64 },
    Hide,
}

impl TreatmentSpec {
    pub fn parse(text: &str) -> Result<TreatmentSpec, String> {
        let (name, arg) = match text.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (text.trim(), None),
        };
        let spec = match (name, arg) {
            ("clear", None) => TreatmentSpec::Clear,
            ("pseudonymise", None) => TreatmentSpec::Pseudonymise,
            ("redact", None) => TreatmentSpec::Redact,
            ("year", None) => TreatmentSpec::Year,
            ("month", None) => TreatmentSpec::Month,
            ("departement", None) => TreatmentSpec::Departement,
            ("hide", None) => TreatmentSpec::Hide,
            ("partial", Some(n)) => match n.parse::<u8>() {
                Ok(keep_last) if (1..=8).contains(&keep_last) => {
                    TreatmentSpec::Partial { keep_last }
                }
                _ => return Err(format!("`partial:{n}`: keep 1 to 8 characters")),
            },
            ("round", Some(b)) => match b.parse::<f64>() {
                Ok(base) if base.is_finite() && base > 0.0 => TreatmentSpec::Round { base },
                _ => return Err(format!("`round:{b}`: the base is a positive number")),
            },
            _ => {
                return Err(format!(
                    "unknown treatment `{text}` (clear, pseudonymise, redact, partial:N, year, month, departement, round:BASE, hide)"
                ));
            }
        };
        Ok(spec)
    }

    pub fn name(&self) -> String {
        match self {
            TreatmentSpec::Clear => "clear".into(),
            TreatmentSpec::Pseudonymise => "pseudonymise".into(),
            TreatmentSpec::Redact => "redact".into(),
            TreatmentSpec::Partial { keep_last } => format!("partial:{keep_last}"),
            TreatmentSpec::Year => "year".into(),
            TreatmentSpec::Month => "month".into(),
            TreatmentSpec::Departement => "departement".into(),
            TreatmentSpec::Round { base } => format!("round:{base}"),
            TreatmentSpec::Hide => "hide".into(),
        }
    }

    /// Whether the treatment can apply to a column of this type.
    pub fn fits(&self, field_type: FieldType) -> bool {
        match self {
            TreatmentSpec::Clear | TreatmentSpec::Hide | TreatmentSpec::Redact => true,
            TreatmentSpec::Pseudonymise => !matches!(field_type, FieldType::Boolean),
            TreatmentSpec::Partial { .. } | TreatmentSpec::Departement => {
                field_type == FieldType::String
            }
            TreatmentSpec::Year | TreatmentSpec::Month => field_type == FieldType::Date,
            TreatmentSpec::Round { .. } => {
                matches!(field_type, FieldType::Integer | FieldType::Number)
            }
        }
    }

    /// Higher protects more; used to choose between rules of equal specificity.
    pub fn protection(&self) -> u8 {
        match self {
            TreatmentSpec::Hide => 8,
            TreatmentSpec::Redact => 7,
            TreatmentSpec::Pseudonymise => 6,
            TreatmentSpec::Partial { .. } => 5,
            TreatmentSpec::Year => 4,
            TreatmentSpec::Departement => 3,
            TreatmentSpec::Month => 2,
            TreatmentSpec::Round { .. } => 1,
            TreatmentSpec::Clear => 0,
        }
    }
}

/// Granularity of a generalised date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DateGranularity {
    Year,
    Month,
}

/// What the engine applies to a column, for one principal and habilitation.
// Deserialize: the cluster's plan codec ships a mask's treatment to executors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "treatment")]
pub enum ColumnTreatment {
    Clear,
    /// Keyed pseudonym in `domain` (the key never appears here).
    Pseudonymised {
        domain: String,
    },
    Redacted,
    Partial {
        keep_last: u8,
    },
    DateGeneralised {
        granularity: DateGranularity,
    },
    PostcodeDepartement,
    Rounded {
        base: f64,
    },
    /// The column does not exist for the caller.
    Hidden,
}

impl ColumnTreatment {
    pub fn from_spec(spec: &TreatmentSpec, domain: &str) -> ColumnTreatment {
        match spec {
            TreatmentSpec::Clear => ColumnTreatment::Clear,
            TreatmentSpec::Pseudonymise => ColumnTreatment::Pseudonymised {
                domain: domain.to_string(),
            },
            TreatmentSpec::Redact => ColumnTreatment::Redacted,
            TreatmentSpec::Partial { keep_last } => ColumnTreatment::Partial {
                keep_last: *keep_last,
            },
            TreatmentSpec::Year => ColumnTreatment::DateGeneralised {
                granularity: DateGranularity::Year,
            },
            TreatmentSpec::Month => ColumnTreatment::DateGeneralised {
                granularity: DateGranularity::Month,
            },
            TreatmentSpec::Departement => ColumnTreatment::PostcodeDepartement,
            TreatmentSpec::Round { base } => ColumnTreatment::Rounded { base: *base },
            TreatmentSpec::Hide => ColumnTreatment::Hidden,
        }
    }

    /// A short label for explain output and `/v1/datasets`.
    pub fn label(&self) -> String {
        match self {
            ColumnTreatment::Clear => "clear".into(),
            ColumnTreatment::Pseudonymised { domain } => format!("pseudonymised (domain {domain})"),
            ColumnTreatment::Redacted => "redacted".into(),
            ColumnTreatment::Partial { keep_last } => {
                format!("partial (last {keep_last} characters)")
            }
            ColumnTreatment::DateGeneralised {
                granularity: DateGranularity::Year,
            } => "date generalised to the year".into(),
            ColumnTreatment::DateGeneralised {
                granularity: DateGranularity::Month,
            } => "date generalised to the month".into(),
            ColumnTreatment::PostcodeDepartement => {
                "postcode generalised to the département".into()
            }
            ColumnTreatment::Rounded { base } => format!("rounded to {base}"),
            ColumnTreatment::Hidden => "hidden".into(),
        }
    }

    pub fn is_hidden(&self) -> bool {
        matches!(self, ColumnTreatment::Hidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn treatments_parse_and_refuse() {
        assert_eq!(
            TreatmentSpec::parse("partial:4"),
            Ok(TreatmentSpec::Partial { keep_last: 4 })
        );
        assert_eq!(
            TreatmentSpec::parse("round:100"),
            Ok(TreatmentSpec::Round { base: 100.0 })
        );
        assert!(TreatmentSpec::parse("partial:0").is_err());
        assert!(TreatmentSpec::parse("round:-1").is_err());
        assert!(TreatmentSpec::parse("round:NaN").is_err());
        assert!(TreatmentSpec::parse("reveal").is_err());
        assert!(TreatmentSpec::parse("clear:1").is_err());
    }

    #[test]
    fn treatments_fit_only_their_types() {
        assert!(TreatmentSpec::Year.fits(FieldType::Date));
        assert!(!TreatmentSpec::Year.fits(FieldType::String));
        assert!(!TreatmentSpec::Departement.fits(FieldType::Integer));
        assert!(TreatmentSpec::Round { base: 10.0 }.fits(FieldType::Number));
        assert!(!TreatmentSpec::Round { base: 10.0 }.fits(FieldType::Date));
    }
}
