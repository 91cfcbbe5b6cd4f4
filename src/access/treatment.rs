//! One column's treatment applied to raw Arrow values: the masks of SQL answers (through
//! `engine`'s mask function) and of lookup records alike.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};

use crate::policy::ColumnTreatment;
use crate::policy::treatment::DateGranularity;
use crate::pseudonym::{PseudonymDomain, kernels};

/// The type a column has once treated (the caller's view).
pub fn masked_type(treatment: &ColumnTreatment, input: &DataType) -> DataType {
    match treatment {
        ColumnTreatment::Pseudonymised { .. }
        | ColumnTreatment::Redacted
        | ColumnTreatment::Partial { .. }
        | ColumnTreatment::PostcodeDepartement => DataType::Utf8,
        _ => input.clone(),
    }
}

/// Applies one column's treatment to raw values (SQL answers and lookups share it).
pub fn apply_treatment(
    treatment: &ColumnTreatment,
    domain: Option<&Arc<PseudonymDomain>>,
    array: &ArrayRef,
) -> Result<ArrayRef> {
    let values = array.as_ref();
    match treatment {
        ColumnTreatment::Clear => Ok(array.clone()),
        ColumnTreatment::Pseudonymised { .. } => match domain {
            Some(domain) => kernels::pseudonymise(domain, values),
            // SECURITY: no key, no value (never the raw column).
            None => return exec_err!("pseudonymisation key unavailable"),
        },
        ColumnTreatment::Redacted => Ok(kernels::redact(values)),
        ColumnTreatment::Partial { keep_last } => kernels::partial(values, *keep_last),
        ColumnTreatment::DateGeneralised { granularity } => {
            kernels::generalise_date(values, *granularity == DateGranularity::Month)
        }
        ColumnTreatment::PostcodeDepartement => kernels::postcode_departement(values),
        ColumnTreatment::Rounded { base } => kernels::round_to(values, *base),
        ColumnTreatment::Hidden => return exec_err!("hidden columns are never projected"),
    }
    .map_err(|e| datafusion::error::DataFusionError::Execution(e.to_string()))
}
