//! The mask of one column as a DataFusion scalar function object (the treatment itself is
//! `access::apply_treatment`, which lookups share).
//!
//! It is placed in the secure scan's projection as an expression object; it is never
//! registered in a session, so SQL cannot call it by name, and its key stays inside the
//! `PseudonymDomain` it holds (never a plan literal).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use crate::policy::ColumnTreatment;
use crate::pseudonym::PseudonymDomain;

/// Applies one column's treatment.
#[derive(Debug)]
pub struct MaskUdf {
    treatment: ColumnTreatment,
    domain: Option<Arc<PseudonymDomain>>,
    input_type: DataType,
    signature: Signature,
}

impl MaskUdf {
    pub fn new(
        treatment: ColumnTreatment,
        domain: Option<Arc<PseudonymDomain>>,
        input_type: DataType,
    ) -> Self {
        Self {
            signature: Signature::exact(vec![input_type.clone()], Volatility::Immutable),
            treatment,
            domain,
            input_type,
        }
    }

    /// Its treatment, domain and input type (the cluster's plan codec ships them).
    pub(super) fn parts(&self) -> (&ColumnTreatment, Option<&Arc<PseudonymDomain>>, &DataType) {
        (&self.treatment, self.domain.as_ref(), &self.input_type)
    }

    /// The type a column has once masked (the caller's view).
    pub fn output_type(treatment: &ColumnTreatment, input: &DataType) -> DataType {
        crate::access::masked_type(treatment, input)
    }
}

impl PartialEq for MaskUdf {
    fn eq(&self, other: &Self) -> bool {
        self.treatment == other.treatment
            && self.input_type == other.input_type
            && match (&self.domain, &other.domain) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl Eq for MaskUdf {}

impl Hash for MaskUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.treatment.label().hash(state);
        self.input_type.hash(state);
    }
}

impl ScalarUDFImpl for MaskUdf {
    fn name(&self) -> &str {
        "masked"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(Self::output_type(&self.treatment, &self.input_type))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [input] = args.args.as_slice() else {
            return exec_err!("masked takes one argument");
        };
        let array = input.to_array(args.number_rows)?;
        let out = crate::access::apply_treatment(&self.treatment, self.domain.as_ref(), &array)?;
        Ok(ColumnarValue::Array(out))
    }
}
