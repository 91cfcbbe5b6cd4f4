//! The functions a query may call, each bounded.
//!
//! Owns: [`FunctionSet`], built once per process: the reviewed scalar, aggregate and window
//! functions of DataFusion that a session registers (nothing else exists in a session), every
//! scalar one wrapped in [`Bounded`]; the binding of a logical plan's function calls to those
//! wrappers (the SQL planner builds some calls itself, e.g. `EXTRACT` or `[1, 2]`), and the
//! check that the optimised plan calls nothing else.
//!
//! A bounded call estimates, before it runs, the bytes it will build for the batch from its
//! arguments (the functions that build in proportion to an argument — `repeat`, `lpad`,
//! `array_repeat`, `range`, … — have their own estimate; the others build at most about what
//! they read), refuses a single value above `limits.max_value_bytes`, and takes the batch's
//! estimate from the query's memory pool for the time of the call. Constant folding at
//! planning calls the same wrapper, so `array_repeat(1, 2000000000)` is refused at planning.
//!
//! Must never: let a query call a function that is not in the lists below, or build a value
//! without its estimate checked first.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type, IntervalMonthDayNano, TimeUnit};
use datafusion::common::config::ConfigOptions;
use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::expr::{ScalarFunction, WindowFunction};
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    AggregateUDF, ColumnarValue, Documentation, Expr, ExpressionPlacement, LogicalPlan,
    ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping,
    WindowFunctionDefinition, WindowUDF,
};

use super::EngineError;

/// Scalar functions a query may call (DataFusion's names; their aliases follow them).
const SCALAR: &[&str] = &[
    // mathematics
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "cbrt",
    "ceil",
    "cos",
    "cosh",
    "cot",
    "degrees",
    "exp",
    "factorial",
    "floor",
    "gcd",
    "isnan",
    "iszero",
    "lcm",
    "ln",
    "log",
    "log10",
    "log2",
    "nanvl",
    "pi",
    "power",
    "radians",
    "random",
    "round",
    "signum",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    // conditions
    "coalesce",
    "greatest",
    "least",
    "nullif",
    "nvl",
    "nvl2",
    // strings
    "ascii",
    "bit_length",
    "btrim",
    "character_length",
    "chr",
    "concat",
    "concat_ws",
    "contains",
    "ends_with",
    "find_in_set",
    "initcap",
    "left",
    "levenshtein",
    "lower",
    "lpad",
    "ltrim",
    "octet_length",
    "overlay",
    "repeat",
    "replace",
    "reverse",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "substr_index",
    "to_hex",
    "translate",
    "upper",
    "uuid",
    "encode",
    "decode",
    // regular expressions (linear time: Rust's regex engine)
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_match",
    "regexp_replace",
    // dates and times
    "current_date",
    "current_time",
    "now",
    "date_bin",
    "date_part",
    "date_trunc",
    "from_unixtime",
    "make_date",
    "make_time",
    "to_char",
    "to_date",
    "to_local_time",
    "to_time",
    "to_timestamp",
    "to_timestamp_micros",
    "to_timestamp_millis",
    "to_timestamp_nanos",
    "to_timestamp_seconds",
    "to_unixtime",
    // types and structures
    "arrow_cast",
    "arrow_try_cast",
    "arrow_typeof",
    "get_field",
    "named_struct",
    "struct",
    // lists: the ones that build no more than they read, plus the bounded builders
    "make_array",
    "cardinality",
    "array_length",
    "array_element",
    "array_has",
    "array_slice",
    "array_position",
    "array_positions",
    "array_concat",
    "array_append",
    "array_prepend",
    "array_sort",
    "array_distinct",
    "array_reverse",
    "array_remove",
    "array_remove_all",
    "array_remove_n",
    "array_pop_back",
    "array_pop_front",
    "array_dims",
    "array_ndims",
    "empty",
    "array_max",
    "array_min",
    "flatten",
    "array_to_string",
    "string_to_array",
    "range",
    "generate_series",
    "array_repeat",
];

/// Aggregate functions a query may call. Their state is counted in the query's pool.
const AGGREGATE: &[&str] = &[
    "any_value",
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
    "array_agg",
    "avg",
    "bit_and",
    "bit_or",
    "bit_xor",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "first_value",
    "grouping",
    "last_value",
    "max",
    "median",
    "min",
    "nth_value",
    "percentile_cont",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "string_agg",
    "sum",
    "var",
    "var_pop",
];

/// Aggregates whose value grows with the rows they see: allowed in `GROUP BY`, refused over a
/// window (a running frame would build a value per row, quadratic in all).
const GROWING_AGGREGATES: &[&str] = &["array_agg", "string_agg"];

/// Window functions a query may call.
const WINDOW: &[&str] = &[
    "cume_dist",
    "dense_rank",
    "first_value",
    "lag",
    "last_value",
    "lead",
    "nth_value",
    "ntile",
    "percent_rank",
    "rank",
    "row_number",
];

/// The reviewed functions, built once per process.
#[derive(Debug)]
pub struct FunctionSet {
    scalars: Vec<Arc<ScalarUDF>>,
    aggregates: Vec<Arc<AggregateUDF>>,
    windows: Vec<Arc<WindowUDF>>,
    /// Every callable name, aliases included (lower case).
    callable: HashSet<String>,
    /// Bounded scalar functions by name and alias.
    bounded: HashMap<String, Arc<ScalarUDF>>,
}

impl FunctionSet {
    /// The process's set.
    pub fn get() -> &'static FunctionSet {
        static SET: OnceLock<FunctionSet> = OnceLock::new();
        SET.get_or_init(FunctionSet::build)
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> &'static FunctionSet {
        Self::get()
    }

    fn build() -> FunctionSet {
        let defaults = datafusion::execution::SessionStateDefaults::default_scalar_functions();
        let mut scalars = Vec::new();
        let mut bounded = HashMap::new();
        let mut callable = HashSet::new();
        for f in defaults {
            if !SCALAR.contains(&f.name()) {
                continue;
            }
            let wrapped = Arc::new(ScalarUDF::new_from_impl(Bounded::new(f.clone())));
            for name in std::iter::once(f.name()).chain(f.aliases().iter().map(String::as_str)) {
                callable.insert(name.to_lowercase());
                bounded.insert(name.to_lowercase(), wrapped.clone());
            }
            scalars.push(wrapped);
        }
        let mut aggregates = Vec::new();
        for f in datafusion::execution::SessionStateDefaults::default_aggregate_functions() {
            if AGGREGATE.contains(&f.name()) {
                callable.insert(f.name().to_lowercase());
                callable.extend(f.aliases().iter().map(|a| a.to_lowercase()));
                aggregates.push(f);
            }
        }
        let mut windows = Vec::new();
        for f in datafusion::execution::SessionStateDefaults::default_window_functions() {
            if WINDOW.contains(&f.name()) {
                callable.insert(f.name().to_lowercase());
                callable.extend(f.aliases().iter().map(|a| a.to_lowercase()));
                windows.push(f);
            }
        }
        FunctionSet {
            scalars,
            aggregates,
            windows,
            callable,
            bounded,
        }
    }

    pub fn scalars(&self) -> Vec<Arc<ScalarUDF>> {
        self.scalars.clone()
    }

    /// The bounded scalar function called `name` (the cluster's plan codec finds a shipped
    /// call's function here: nothing else can be decoded).
    pub fn scalar(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.scalars.iter().find(|f| f.name() == name).cloned()
    }

    /// Is `udf` one of this set's bounded wrappers?
    pub fn is_bounded(udf: &ScalarUDF) -> bool {
        (udf.inner().as_ref() as &dyn Any).is::<Bounded>()
    }

    pub fn aggregates(&self) -> Vec<Arc<AggregateUDF>> {
        self.aggregates.clone()
    }

    pub fn windows(&self) -> Vec<Arc<WindowUDF>> {
        self.windows.clone()
    }

    /// May a query call `name` (lower case)?
    pub fn callable(&self, name: &str) -> bool {
        self.callable.contains(name)
    }

    /// Binds every scalar call of `plan` (subqueries included) to its bounded wrapper, and
    /// refuses calls of anything else and growing aggregates over windows.
    pub fn bind(&self, plan: LogicalPlan) -> Result<LogicalPlan, EngineError> {
        let mut refused: Option<String> = None;
        let bound = plan
            .transform_up_with_subqueries(|node| {
                node.map_expressions(|expr| {
                    expr.transform_up(|e| match e {
                        Expr::ScalarFunction(f) if !is_bounded(&f.func) => {
                            match self.bounded.get(&f.func.name().to_lowercase()) {
                                Some(wrapper) => Ok(Transformed::yes(Expr::ScalarFunction(
                                    ScalarFunction::new_udf(wrapper.clone(), f.args),
                                ))),
                                None => {
                                    refused.get_or_insert_with(|| f.func.name().to_string());
                                    Ok(Transformed::no(Expr::ScalarFunction(f)))
                                }
                            }
                        }
                        Expr::WindowFunction(w) => {
                            if let Some(name) = growing_over_window(&w) {
                                refused.get_or_insert(name);
                            }
                            Ok(Transformed::no(Expr::WindowFunction(w)))
                        }
                        other => Ok(Transformed::no(other)),
                    })
                })
            })
            .map_err(|e| EngineError::Internal(e.to_string()))?
            .data;
        match refused {
            // SECURITY: nothing but a reviewed, bounded function is ever evaluated.
            Some(name) => Err(EngineError::Refused(format!(
                "function `{name}` is not available on this hub{}",
                if GROWING_AGGREGATES.contains(&name.as_str()) {
                    " over a window (use it with GROUP BY)"
                } else {
                    ""
                }
            ))),
            None => Ok(bound),
        }
    }

    /// Checks, after optimisation, that every scalar call of `plan` is bounded.
    pub fn verify_bound(plan: &LogicalPlan) -> Result<(), EngineError> {
        let mut unbound: Option<String> = None;
        let _ = plan.apply_with_subqueries(|node| {
            node.apply_expressions(|expr| {
                expr.apply(|e| {
                    if let Expr::ScalarFunction(f) = e
                        && !is_bounded(&f.func)
                    {
                        unbound = Some(f.func.name().to_string());
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        });
        match unbound {
            // SECURITY: an optimizer rule that introduced an unbounded call fails the query.
            Some(name) => {
                tracing::error!(function = %name, "an optimised plan calls an unbound function");
                Err(EngineError::Refused(format!(
                    "function `{name}` is not available on this hub"
                )))
            }
            None => Ok(()),
        }
    }
}

fn is_bounded(f: &ScalarUDF) -> bool {
    (f.inner().as_ref() as &dyn Any).is::<Bounded>()
}

fn growing_over_window(w: &WindowFunction) -> Option<String> {
    match &w.fun {
        WindowFunctionDefinition::AggregateUDF(f) if GROWING_AGGREGATES.contains(&f.name()) => {
            Some(f.name().to_string())
        }
        _ => None,
    }
}

/// The query's memory pool and value cap, carried to every call through the session's
/// configuration (`ScalarFunctionArgs::config_options`).
#[derive(Debug, Clone)]
pub struct CallBudget {
    pub pool: Option<Arc<dyn MemoryPool>>,
    pub max_value_bytes: usize,
}

impl Default for CallBudget {
    fn default() -> Self {
        Self {
            pool: None,
            max_value_bytes: crate::config::LimitsConfig::default().max_value_bytes,
        }
    }
}

impl ExtensionOptions for CallBudget {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }
    fn set(&mut self, key: &str, _value: &str) -> Result<()> {
        // SECURITY: not settable from SQL (`SET` is refused anyway).
        Err(DataFusionError::Plan(format!("`{key}` cannot be set")))
    }
    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}

impl ConfigExtension for CallBudget {
    const PREFIX: &'static str = "passerelle_budget";
}

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Growth {
    /// At most about what it reads (all the arguments' bytes).
    Proportional,
    /// `array_repeat(element, count)`.
    ArrayRepeat,
    /// `range` / `generate_series`: `(start, stop, step)` in integers, dates or timestamps.
    Series,
    /// `repeat(text, n)`.
    Repeat,
    /// `lpad` / `rpad(text, n[, fill])`: `n` characters.
    Pad,
    /// `replace(text, from, to)`.
    Replace,
    /// `regexp_replace(text, pattern, replacement[, flags])`.
    RegexpReplace,
    /// `concat_ws(separator, …)`: the separator between every two arguments.
    ConcatWs,
    /// `array_to_string(list, delimiter[, null])`.
    ArrayToString,
    /// `string_to_array(text, delimiter[, null])`: up to one element per character.
    StringToArray,
    /// `levenshtein(a, b)`: memory of one row of the table, time of `len(a) × len(b)`.
    Levenshtein,
}

impl Growth {
    fn of(name: &str) -> Growth {
        match name {
            "array_repeat" => Growth::ArrayRepeat,
            "range" | "generate_series" => Growth::Series,
            "repeat" => Growth::Repeat,
            "lpad" | "rpad" => Growth::Pad,
            "replace" => Growth::Replace,
            "regexp_replace" => Growth::RegexpReplace,
            "concat_ws" => Growth::ConcatWs,
            "array_to_string" => Growth::ArrayToString,
            "string_to_array" => Growth::StringToArray,
            "levenshtein" => Growth::Levenshtein,
            _ => Growth::Proportional,
        }
    }
}

/// Most `len(a) × len(b)` a batch of `levenshtein` may compute (about a second of CPU).
const LEVENSHTEIN_WORK: u64 = 1 << 28;

/// A DataFusion scalar function whose output is estimated and bounded before it runs.
#[derive(Debug)]
pub struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
}

impl PartialEq for Bounded {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}
impl Eq for Bounded {}
impl std::hash::Hash for Bounded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl Bounded {
    fn new(inner: Arc<ScalarUDF>) -> Self {
        let growth = Growth::of(inner.name());
        Self { inner, growth }
    }

    /// Bytes the call builds: (largest single value, whole batch).
    fn estimate(&self, args: &[ColumnarValue], rows: usize) -> Result<(u64, u64)> {
        let rows_iter = 0..rows.max(1);
        let per_row = |f: &dyn Fn(usize) -> u64| -> (u64, u64) {
            rows_iter.clone().fold((0u64, 0u64), |(max, sum), row| {
                let v = f(row);
                (max.max(v), sum.saturating_add(v))
            })
        };
        Ok(match self.growth {
            Growth::Proportional => {
                let total = args
                    .iter()
                    .map(|a| arg_bytes(a, rows))
                    .fold(0u64, u64::saturating_add);
                (0, total)
            }
            Growth::ArrayRepeat => per_row(&|row| {
                let count = int_at(args.get(1), row).unwrap_or(0).max(0) as u64;
                count.saturating_mul(value_bytes_at(args.first(), row).saturating_add(8))
            }),
            Growth::Series => per_row(&|row| series_len(args, row).saturating_mul(8)),
            Growth::Repeat => per_row(&|row| {
                let n = int_at(args.get(1), row).unwrap_or(0).max(0) as u64;
                n.saturating_mul(text_len_at(args.first(), row))
            }),
            Growth::Pad => per_row(&|row| {
                let n = int_at(args.get(1), row).unwrap_or(0).max(0) as u64;
                n.saturating_mul(4)
                    .saturating_add(text_len_at(args.first(), row))
            }),
            Growth::Replace => per_row(&|row| {
                let text = text_len_at(args.first(), row);
                let from = text_len_at(args.get(1), row).max(1);
                let to = text_len_at(args.get(2), row);
                (text / from + 1).saturating_mul(to).saturating_add(text)
            }),
            Growth::RegexpReplace => per_row(&|row| {
                let text = text_len_at(args.first(), row);
                let replacement = text_len_at(args.get(2), row);
                let references =
                    text_at(args.get(2), row).map_or(0, |r| r.matches(['$', '\\']).count() as u64);
                (text + 1)
                    .saturating_mul(replacement)
                    .saturating_add(text.saturating_mul(1 + references))
            }),
            Growth::ConcatWs => per_row(&|row| {
                let separator = text_len_at(args.first(), row);
                let others = args.len().saturating_sub(1) as u64;
                let texts: u64 = args
                    .iter()
                    .skip(1)
                    .map(|a| text_len_at(Some(a), row))
                    .fold(0, u64::saturating_add);
                separator.saturating_mul(others).saturating_add(texts)
            }),
            Growth::ArrayToString => per_row(&|row| {
                let elements = list_len_at(args.first(), row);
                let joints = text_len_at(args.get(1), row)
                    .saturating_add(text_len_at(args.get(2), row))
                    .saturating_add(32);
                elements
                    .saturating_mul(joints)
                    .saturating_add(value_bytes_at(args.first(), row))
            }),
            Growth::StringToArray => per_row(&|row| {
                text_len_at(args.first(), row)
                    .saturating_mul(16)
                    .saturating_add(64)
            }),
            Growth::Levenshtein => {
                let (_, work) = per_row(&|row| {
                    text_len_at(args.first(), row).saturating_mul(text_len_at(args.get(1), row))
                });
                if work > LEVENSHTEIN_WORK {
                    return Err(DataFusionError::ResourcesExhausted(format!(
                        "{}: `levenshtein` on strings this long would take too long (at most {LEVENSHTEIN_WORK} \
                         character pairs a batch); compare shorter strings",
                        super::memory::VALUE_TOO_LARGE
                    )));
                }
                per_row(&|row| {
                    text_len_at(args.get(1), row)
                        .saturating_add(1)
                        .saturating_mul(8)
                })
            }
        })
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.inner().return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.inner().return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn datafusion::common::ExprSchema) -> bool {
        #[allow(deprecated, reason = "delegated as is")]
        self.inner.inner().is_nullable(args, schema)
    }

    fn short_circuits(&self) -> bool {
        self.inner.inner().short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.inner().coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner().documentation()
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.inner().with_updated_config(config)?;
        Some(ScalarUDF::new_from_impl(Bounded::new(Arc::new(updated))))
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    /// DataFusion's rewrite of the call (some functions exist only to be rewritten, such as
    /// `coalesce` into `CASE` or `arrow_cast` into a cast), with every call it builds bound
    /// in turn, so that no unbounded function can be folded at planning.
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        match self.inner.inner().simplify(args, info)? {
            ExprSimplifyResult::Simplified(expr) => {
                let mut unknown = false;
                let bound = expr
                    .transform_up(|e| match e {
                        Expr::ScalarFunction(f) if !is_bounded(&f.func) => {
                            match FunctionSet::get()
                                .bounded
                                .get(&f.func.name().to_lowercase())
                            {
                                Some(wrapper) => Ok(Transformed::yes(Expr::ScalarFunction(
                                    ScalarFunction::new_udf(wrapper.clone(), f.args),
                                ))),
                                None => {
                                    unknown = true;
                                    Ok(Transformed::no(Expr::ScalarFunction(f)))
                                }
                            }
                        }
                        other => Ok(Transformed::no(other)),
                    })?
                    .data;
                // SECURITY: a rewrite into a function outside the reviewed set is refused.
                if unknown {
                    return Err(DataFusionError::Plan(format!(
                        "function `{}` is not available on this hub",
                        self.name()
                    )));
                }
                Ok(ExprSimplifyResult::Simplified(bound))
            }
            original => Ok(original),
        }
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.inner().preimage(args, lit_expr, info)
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.inner().evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.inner().propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.inner().output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().strictly_order_preserving(inputs)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.inner().struct_field_mapping(literal_args)
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.inner().placement(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let budget = args
            .config_options
            .extensions
            .get::<CallBudget>()
            .cloned()
            .unwrap_or_default();
        let (largest, mut total) = self.estimate(&args.args, args.number_rows)?;
        // A call on constants gives a constant, which DataFusion repeats over every row of a
        // batch wherever it is used: it costs its size times a batch.
        if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            let batch = usize::from(args.config_options.execution.batch_size).max(1) as u64;
            total = total.max(largest).saturating_mul(batch);
        }
        // SECURITY (availability): a value larger than the cap is refused before it is built.
        if largest > budget.max_value_bytes as u64 {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "{}: `{}` would build a value of about {} bytes; this hub allows {} \
                 (`limits.max_value_bytes`)",
                super::memory::VALUE_TOO_LARGE,
                self.name(),
                largest,
                budget.max_value_bytes
            )));
        }
        // SECURITY (availability): what the call builds for the batch is taken from the
        // query's pool for the time of the call (refused when the pool cannot hold it).
        let _reservation = match &budget.pool {
            Some(pool) if total > 0 => {
                let reservation = MemoryConsumer::new(self.name()).register(pool);
                if let Err(e) = reservation.try_grow(usize::try_from(total).unwrap_or(usize::MAX)) {
                    // The hub's budget being full is the hub's state, not the query's fault.
                    if e.to_string().contains(super::memory::HUB_MEMORY_FULL) {
                        return Err(e);
                    }
                    return Err(DataFusionError::ResourcesExhausted(format!(
                        "{}: `{}` would build about {total} bytes for a batch of rows, more than \
                         one query may hold (`limits.query_memory_mb`)",
                        super::memory::VALUE_TOO_LARGE,
                        self.name()
                    )));
                }
                Some(reservation)
            }
            None if total > budget.max_value_bytes as u64 && largest > 0 => {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "{}: `{}` would build about {total} bytes",
                    super::memory::VALUE_TOO_LARGE,
                    self.name()
                )));
            }
            _ => None,
        };
        self.inner.invoke_with_args(args)
    }
}

/// Bytes an argument holds for the batch (a scalar counts once per row).
fn arg_bytes(arg: &ColumnarValue, rows: usize) -> u64 {
    match arg {
        ColumnarValue::Array(a) => a.to_data().get_slice_memory_size().unwrap_or(0) as u64,
        ColumnarValue::Scalar(s) => (s.size() as u64).saturating_mul(rows.max(1) as u64),
    }
}

fn scalar_at(arg: Option<&ColumnarValue>, row: usize) -> Option<ScalarValue> {
    match arg? {
        ColumnarValue::Scalar(s) => Some(s.clone()),
        ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row).ok(),
    }
}

fn int_at(arg: Option<&ColumnarValue>, row: usize) -> Option<i64> {
    match arg? {
        ColumnarValue::Scalar(s) => scalar_int(s),
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Int64 => {
                let ints = a.as_primitive::<Int64Type>();
                (!ints.is_null(row)).then(|| ints.value(row))
            }
            _ => scalar_at(Some(&ColumnarValue::Array(a.clone())), row)
                .as_ref()
                .and_then(scalar_int),
        },
    }
}

fn scalar_int(s: &ScalarValue) -> Option<i64> {
    match s.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(v) => v,
        _ => None,
    }
}

fn text_at(arg: Option<&ColumnarValue>, row: usize) -> Option<String> {
    match scalar_at(arg, row)? {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s,
        _ => None,
    }
}

/// Byte length of a text or binary argument at `row` (0 when null or not text).
fn text_len_at(arg: Option<&ColumnarValue>, row: usize) -> u64 {
    let Some(arg) = arg else { return 0 };
    match arg {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(Some(t))
            | ScalarValue::LargeUtf8(Some(t))
            | ScalarValue::Utf8View(Some(t)) => t.len() as u64,
            ScalarValue::Binary(Some(b))
            | ScalarValue::LargeBinary(Some(b))
            | ScalarValue::BinaryView(Some(b)) => b.len() as u64,
            _ => 0,
        },
        ColumnarValue::Array(a) => array_text_len(a, row),
    }
}

fn array_text_len(a: &ArrayRef, row: usize) -> u64 {
    if row >= a.len() || a.is_null(row) {
        return 0;
    }
    match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(row).len() as u64,
        DataType::LargeUtf8 => a.as_string::<i64>().value(row).len() as u64,
        DataType::Utf8View => a.as_string_view().value(row).len() as u64,
        DataType::Binary => a.as_binary::<i32>().value(row).len() as u64,
        DataType::LargeBinary => a.as_binary::<i64>().value(row).len() as u64,
        DataType::BinaryView => a.as_binary_view().value(row).len() as u64,
        _ => 0,
    }
}

/// Bytes of any value at `row`.
fn value_bytes_at(arg: Option<&ColumnarValue>, row: usize) -> u64 {
    match arg {
        None => 0,
        Some(ColumnarValue::Scalar(s)) => s.size() as u64,
        Some(ColumnarValue::Array(a)) => {
            if row >= a.len() {
                return 0;
            }
            a.slice(row, 1)
                .to_data()
                .get_slice_memory_size()
                .unwrap_or(0) as u64
        }
    }
}

/// Elements of a list argument at `row` (1 when not a list).
fn list_len_at(arg: Option<&ColumnarValue>, row: usize) -> u64 {
    match scalar_at(arg, row) {
        Some(ScalarValue::List(l)) => l.value_length(0).max(0) as u64,
        Some(ScalarValue::LargeList(l)) => l.value_length(0).max(0) as u64,
        Some(ScalarValue::FixedSizeList(l)) => l.value_length().max(0) as u64,
        _ => 1,
    }
}

/// Elements of `range` / `generate_series` at `row`, from its (coerced) arguments.
fn series_len(args: &[ColumnarValue], row: usize) -> u64 {
    let (start, stop, step) = match args.len() {
        1 => (
            Some(ScalarValue::Int64(Some(0))),
            scalar_at(args.first(), row),
            None,
        ),
        2 => (
            scalar_at(args.first(), row),
            scalar_at(args.get(1), row),
            None,
        ),
        _ => (
            scalar_at(args.first(), row),
            scalar_at(args.get(1), row),
            scalar_at(args.get(2), row),
        ),
    };
    let (Some(start), Some(stop)) = (start, stop) else {
        return 0;
    };
    // Span and step in one unit: integers as they are, dates in days, timestamps in ns.
    let (span, unit_step): (i128, Option<i128>) = match (&start, &stop) {
        (ScalarValue::Int64(Some(a)), ScalarValue::Int64(Some(b))) => {
            let step = match &step {
                None => 1,
                Some(ScalarValue::Int64(Some(s))) => i128::from(*s),
                Some(_) => return 0,
            };
            (i128::from(*b) - i128::from(*a), Some(step))
        }
        (ScalarValue::Date32(Some(a)), ScalarValue::Date32(Some(b))) => (
            i128::from(*b) - i128::from(*a),
            interval_step(step.as_ref(), 86_400_000_000_000),
        ),
        (ScalarValue::Date64(Some(a)), ScalarValue::Date64(Some(b))) => (
            (i128::from(*b) - i128::from(*a)) / 86_400_000,
            interval_step(step.as_ref(), 86_400_000_000_000),
        ),
        (a, b) => match (timestamp_ns(a), timestamp_ns(b)) {
            (Some(a), Some(b)) => (b - a, interval_step(step.as_ref(), 1)),
            _ => return 0,
        },
    };
    let step = unit_step.unwrap_or(1).unsigned_abs().max(1);
    let n = span.unsigned_abs() / step + 1;
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The smallest length a month-day-nano interval step can have, in `unit` nanoseconds (a
/// month counts as 28 days; a step whose parts have different signs counts as one unit).
fn interval_step(step: Option<&ScalarValue>, unit: i128) -> Option<i128> {
    const DAY: i128 = 86_400_000_000_000;
    let IntervalMonthDayNano {
        months,
        days,
        nanoseconds,
    } = match step? {
        ScalarValue::IntervalMonthDayNano(Some(v)) => *v,
        _ => return Some(1),
    };
    let parts = [
        i128::from(months) * 28 * DAY,
        i128::from(days) * DAY,
        i128::from(nanoseconds),
    ];
    let positive = parts.iter().all(|p| *p >= 0);
    let negative = parts.iter().all(|p| *p <= 0);
    if !(positive || negative) {
        return Some(1);
    }
    let ns: i128 = parts.iter().map(|p| p.abs()).sum();
    Some((ns / unit).max(1))
}

fn timestamp_ns(v: &ScalarValue) -> Option<i128> {
    let (value, unit) = match v {
        ScalarValue::TimestampSecond(Some(x), _) => (*x, TimeUnit::Second),
        ScalarValue::TimestampMillisecond(Some(x), _) => (*x, TimeUnit::Millisecond),
        ScalarValue::TimestampMicrosecond(Some(x), _) => (*x, TimeUnit::Microsecond),
        ScalarValue::TimestampNanosecond(Some(x), _) => (*x, TimeUnit::Nanosecond),
        _ => return None,
    };
    let factor: i128 = match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    };
    Some(i128::from(value) * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_function_exists_in_datafusion() {
        let set = FunctionSet::get();
        for name in SCALAR {
            assert!(
                set.bounded.contains_key(*name),
                "scalar `{name}` is not a DataFusion function"
            );
        }
        for name in AGGREGATE {
            assert!(
                set.aggregates.iter().any(|f| f.name() == *name),
                "aggregate `{name}`"
            );
        }
        for name in WINDOW {
            assert!(
                set.windows.iter().any(|f| f.name() == *name),
                "window `{name}`"
            );
        }
        assert!(set.callable("char_length"), "aliases are callable");
    }

    #[test]
    fn functions_that_reveal_the_hub_or_explode_are_not_callable() {
        let set = FunctionSet::get();
        for name in [
            "input_file_name",
            "file_row_index",
            "version",
            "arrow_metadata",
            "with_metadata",
            "array_resize",
            "array_has_all",
            "array_intersect",
            "arrays_zip",
            "map",
            "array_transform",
        ] {
            assert!(!set.callable(name), "`{name}` must not be callable");
        }
    }

    fn estimate(name: &str, args: Vec<ColumnarValue>, rows: usize) -> (u64, u64) {
        let set = FunctionSet::get();
        let f = set.bounded.get(name).unwrap();
        let bounded = (f.inner().as_ref() as &dyn Any)
            .downcast_ref::<Bounded>()
            .unwrap();
        bounded.estimate(&args, rows).unwrap()
    }

    fn int(v: i64) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Int64(Some(v)))
    }

    fn text(v: &str) -> ColumnarValue {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(v.into())))
    }

    #[test]
    fn builders_are_estimated_from_their_arguments() {
        assert!(estimate("array_repeat", vec![int(1), int(2_000_000_000)], 1).0 > 16_000_000_000);
        assert_eq!(
            estimate("range", vec![int(0), int(200_000_000)], 1).0,
            1_600_000_008
        );
        assert_eq!(estimate("generate_series", vec![int(10)], 1).0, 88);
        assert_eq!(estimate("repeat", vec![text("ab"), int(1_000)], 1).0, 2_000);
        assert_eq!(estimate("lpad", vec![text("x"), int(1_000)], 1).0, 4_001);
        assert!(
            estimate(
                "replace",
                vec![text("aaaa"), text("a"), text("bbbbbbbb")],
                1
            )
            .0 >= 32
        );
        let days = ColumnarValue::Scalar(ScalarValue::Date32(Some(0)));
        let later = ColumnarValue::Scalar(ScalarValue::Date32(Some(3650)));
        let month = ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(Some(
            IntervalMonthDayNano::new(1, 0, 0),
        )));
        let (one, _) = estimate("range", vec![days, later, month], 1);
        assert!(one <= 8 * 200, "ten years by month: {one}");
        // Per row over a batch: the total grows with the rows.
        let counts =
            ColumnarValue::Array(Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                10, 20, 30,
            ])));
        let (largest, total) = estimate("repeat", vec![text("x"), counts], 3);
        assert_eq!((largest, total), (30, 60));
    }
}
