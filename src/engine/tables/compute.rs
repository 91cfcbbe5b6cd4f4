//! Computing one table: its cells from its source dataset's raw file, protected by `secrecy`,
//! and the published table as one Arrow batch in which a hidden value is NULL beside its flag
//! (`<measure>_secret`: `primary` or `secondary`).
//!
//! Owns: the grouping-set queries over the raw file (SQL built here from the typed definition
//! of `policy::tables`, one query per set of dimensions and one more per set for the largest
//! contributors), the SQL of each derivation, the cells of the [`Cube`], the published batch.
//! Must never: run a reader's SQL over the microdata (only definitions validated in the policy
//! set reach this module), or return a table whose protection did not pass its audit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use super::store::Truth;
use crate::policy::tables::{Derivation, MAX_DIMENSIONS, TableDimension, TableSpec};
use crate::secrecy::{
    CellFacts, Cube, Dimension, Measure, MeasureKind, Neighbour, Protection, TOTAL_LABEL,
    protect_with,
};

/// A table ready to be read: its cells, their protection, and the batch readers get.
#[derive(Debug, Clone)]
pub struct PublishedTable {
    pub id: String,
    pub cube: Cube,
    pub protection: Protection,
    pub batch: RecordBatch,
    /// The source stamp of the version it replaced and was audited with, if any.
    pub previous: Option<String>,
    /// The tables of the same source it was audited with.
    pub linked: Vec<String>,
}

/// Why a table is not published (for the operator; never for a reader).
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("table `{0}`: the definition is not usable: {1}")]
    Definition(String, String),
    #[error("table `{0}`: computing its cells failed: {1}")]
    Compute(String, String),
    #[error("table `{0}`: {1}")]
    Cells(String, crate::secrecy::CubeError),
    #[error("table `{0}` is not published: {1}")]
    Unprotected(String, crate::secrecy::ProtectError),
}

/// The cells of one grouping set, by their labels on its dimensions.
type Cells = Vec<(Vec<String>, CellFacts)>;

/// A published version the new table will be read beside (the version it replaces, a table of
/// the same source): its truth and its cells.
pub type Beside = (Truth, Cube);

/// Computes, protects and lays out the table `spec` describes from `source` (its source
/// dataset's raw file), protected together with the published versions `beside` it.
pub async fn build(
    spec: &TableSpec,
    source: &Path,
    beside: Vec<Beside>,
) -> Result<PublishedTable, TableError> {
    let definition = spec;
    let id = definition.id.clone();
    let bad = |m: String| TableError::Definition(id.clone(), m);
    // policy::tables validated the definition; these bounds keep the queries few regardless.
    if definition.dimensions.is_empty() || definition.dimensions.len() > MAX_DIMENSIONS {
        return Err(bad(format!("a table has 1 to {MAX_DIMENSIONS} dimensions")));
    }
    let compute =
        |e: datafusion::error::DataFusionError| TableError::Compute(id.clone(), e.to_string());
    let ctx = SessionContext::new();
    let path = source.to_string_lossy().to_string();
    ctx.register_parquet("source", &path, ParquetReadOptions::default())
        .await
        .map_err(compute)?;
    // One key column per level of each dimension (coarsest first), in the dimensions' order.
    let levels: Vec<(usize, &TableDimension)> = definition
        .dimensions
        .iter()
        .enumerate()
        .flat_map(|(j, d)| d.levels().map(move |l| (j, l)))
        .collect();
    let n = levels.len();
    let dims_sql: Vec<String> = levels.iter().map(|(_, l)| dimension_sql(l)).collect();
    // Rows with no value on a dimension (at any level) are left out of every cell, margins
    // included, so that margins stay the totals of their lines.
    let filter = dims_sql
        .iter()
        .map(|d| format!("{d} IS NOT NULL"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let unit = format!("\"{}\"", definition.unit.replace('"', "\"\""));
    // A sum taken once per unit needs one value per unit.
    for measure in definition.measures.iter().filter(|m| m.per_unit) {
        let column = quoted(measure.column.as_deref().unwrap_or_default());
        let sql = format!(
            "SELECT count(*) AS n FROM (SELECT {unit} FROM source WHERE {filter} GROUP BY {unit} \
             HAVING min({column}) <> max({column}))"
        );
        let varying: i64 = ctx
            .sql(&sql)
            .await
            .map_err(compute)?
            .collect()
            .await
            .map_err(compute)?
            .first()
            .map_or(0, |b| b.column(0).as_primitive::<Int64Type>().value(0));
        if varying > 0 {
            return Err(bad(format!(
                "measure `{}` is summed once per unit, but {varying} unit(s) have different values of it on their rows",
                measure.name
            )));
        }
    }
    let mut rows_by_set: Vec<(u32, Cells)> = Vec::new();
    for set in 0..(1u32 << n) {
        // A level is grouped only with every coarser level of its dimension.
        let nested = (1..n).all(|k| {
            set & (1 << k) == 0 || levels[k - 1].0 != levels[k].0 || set & (1 << (k - 1)) != 0
        });
        if !nested {
            continue;
        }
        let grouped: Vec<usize> = (0..n).filter(|j| set & (1 << j) != 0).collect();
        let keys: Vec<String> = grouped
            .iter()
            .map(|&j| format!("{} AS k{j}", dims_sql[j]))
            .collect();
        let group_by = if grouped.is_empty() {
            String::new()
        } else {
            format!(
                "GROUP BY {}",
                (1..=grouped.len())
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut aggregates = vec![
            "count(*) AS n_rows".to_string(),
            format!("count(DISTINCT {unit}) AS n_units"),
        ];
        for (m, measure) in definition.measures.iter().enumerate() {
            if let Some(column) = &measure.column {
                aggregates.push(format!(
                    "sum(CAST(\"{}\" AS DOUBLE)) AS s{m}",
                    column.replace('"', "\"\"")
                ));
            }
        }
        let select: Vec<String> = keys.iter().cloned().chain(aggregates).collect();
        let sql = format!(
            "SELECT {} FROM source WHERE {filter} {group_by}",
            select.join(", ")
        );
        let batches = ctx
            .sql(&sql)
            .await
            .map_err(compute)?
            .collect()
            .await
            .map_err(compute)?;
        // Largest contributor of each sum, per cell, and the sums taken once per unit.
        let sums: Vec<usize> = (0..definition.measures.len())
            .filter(|&m| definition.measures[m].column.is_some())
            .collect();
        let mut largest: HashMap<Vec<String>, (Vec<f64>, Vec<f64>)> = HashMap::new();
        if !sums.is_empty() {
            let inner_keys: Vec<String> = grouped
                .iter()
                .map(|&j| format!("{} AS k{j}", dims_sql[j]))
                .collect();
            let inner_sums: Vec<String> = sums
                .iter()
                .map(|&m| {
                    let measure = &definition.measures[m];
                    // A unit's contribution: the sum of its rows, or its one value.
                    format!(
                        "{}(CAST({} AS DOUBLE)) AS u{m}",
                        if measure.per_unit { "max" } else { "sum" },
                        quoted(measure.column.as_deref().unwrap_or_default())
                    )
                })
                .collect();
            let inner_group = (1..=grouped.len() + 1)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let inner = format!(
                "SELECT {} FROM source WHERE {filter} GROUP BY {inner_group}",
                inner_keys
                    .iter()
                    .cloned()
                    .chain([format!("{unit} AS unit")])
                    .chain(inner_sums)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let outer_keys: Vec<String> = grouped.iter().map(|&j| format!("k{j}")).collect();
            let outer_max: Vec<String> = sums
                .iter()
                .map(|&m| format!("max(u{m}) AS l{m}"))
                .chain(sums.iter().map(|&m| format!("sum(u{m}) AS t{m}")))
                .collect();
            let outer_group = if grouped.is_empty() {
                String::new()
            } else {
                format!("GROUP BY {}", outer_keys.join(", "))
            };
            let sql = format!(
                "SELECT {} FROM ({inner}) {outer_group}",
                outer_keys
                    .iter()
                    .cloned()
                    .chain(outer_max)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for batch in ctx
                .sql(&sql)
                .await
                .map_err(compute)?
                .collect()
                .await
                .map_err(compute)?
            {
                for row in 0..batch.num_rows() {
                    let key = labels(&batch, grouped.len(), row);
                    let value = |i: usize| {
                        let column = batch.column(grouped.len() + i);
                        let column = column.as_primitive::<Float64Type>();
                        if column.is_null(row) {
                            0.0
                        } else {
                            column.value(row)
                        }
                    };
                    let tops = (0..sums.len()).map(value).collect();
                    let totals = (sums.len()..2 * sums.len()).map(value).collect();
                    largest.insert(key, (tops, totals));
                }
            }
        }
        let mut cells = Vec::new();
        for batch in batches {
            for row in 0..batch.num_rows() {
                let key = labels(&batch, grouped.len(), row);
                let k = grouped.len();
                let n_rows = batch.column(k).as_primitive::<Int64Type>().value(row) as f64;
                let n_units = batch.column(k + 1).as_primitive::<Int64Type>().value(row) as u64;
                let mut values = Vec::new();
                let mut tops = Vec::new();
                let mut s = 0;
                for measure in &definition.measures {
                    let per_cell = largest.get(&key);
                    match measure.kind {
                        MeasureKind::Rows => {
                            values.push(n_rows);
                            tops.push(0.0);
                        }
                        MeasureKind::Units => {
                            values.push(n_units as f64);
                            tops.push(0.0);
                        }
                        MeasureKind::Sum => {
                            let column = batch.column(k + 2 + s);
                            let column = column.as_primitive::<Float64Type>();
                            values.push(if measure.per_unit {
                                per_cell.map_or(0.0, |(_, totals)| totals[s])
                            } else if column.is_null(row) {
                                0.0
                            } else {
                                column.value(row)
                            });
                            tops.push(per_cell.map_or(0.0, |(l, _)| l[s]));
                            s += 1;
                        }
                    }
                }
                cells.push((
                    key,
                    CellFacts {
                        units: n_units,
                        values,
                        largest: tops,
                    },
                ));
            }
        }
        rows_by_set.push((set, cells));
    }
    // The values of each dimension: those of the finest cells and, in a hierarchy, each of
    // their coarser levels (a value is the path of its labels from the coarsest level), sorted
    // level by level.
    let dimensions = definition.dimensions.len();
    let full = (1u32 << n) - 1;
    let mut paths: Vec<Vec<Vec<String>>> = vec![Vec::new(); dimensions];
    if let Some((_, cells)) = rows_by_set.iter().find(|(set, _)| *set == full) {
        for (key, _) in cells {
            for (j, path) in paths.iter_mut().enumerate() {
                let own: Vec<String> = (0..n)
                    .filter(|&k| levels[k].0 == j)
                    .map(|k| key[k].clone())
                    .collect();
                for depth in 1..=own.len() {
                    path.push(own[..depth].to_vec());
                }
            }
        }
    }
    for (path, d) in paths.iter_mut().zip(&definition.dimensions) {
        let orders: Vec<&Derivation> = d.levels().map(|l| &l.derivation).collect();
        path.sort_by(|a, b| {
            let key = |p: &[String]| -> Vec<(i64, String)> {
                p.iter()
                    .zip(&orders)
                    .map(|(label, derivation)| label_order(derivation, label))
                    .collect()
            };
            key(a).cmp(&key(b))
        });
        path.dedup();
    }
    let index: Vec<HashMap<&[String], usize>> = paths
        .iter()
        .map(|p| {
            p.iter()
                .enumerate()
                .map(|(i, s)| (s.as_slice(), i))
                .collect()
        })
        .collect();
    let dims: Vec<Dimension> = definition
        .dimensions
        .iter()
        .zip(&paths)
        .zip(&index)
        .map(|((d, p), index)| Dimension {
            name: d.name.clone(),
            values: p
                .iter()
                .map(|path| path.last().cloned().unwrap_or_default())
                .collect(),
            parents: if d.within.is_empty() {
                Vec::new()
            } else {
                p.iter()
                    .map(|path| match path.len() {
                        0 | 1 => p.len(),
                        l => index.get(&path[..l - 1]).copied().unwrap_or(p.len()),
                    })
                    .collect()
            },
        })
        .collect();
    if let Some(d) = dims.iter().find(|d| d.values.is_empty()) {
        return Err(bad(format!(
            "dimension `{}` has no value in the data",
            d.name
        )));
    }
    let mut facts = Vec::new();
    for (set, cells) in rows_by_set {
        let grouped: Vec<usize> = (0..n).filter(|k| set & (1 << k) != 0).collect();
        for (key, cell) in cells {
            let mut coords: Vec<usize> = dims.iter().map(Dimension::total).collect();
            for (j, c) in coords.iter_mut().enumerate() {
                let path: Vec<String> = key
                    .iter()
                    .zip(&grouped)
                    .filter(|(_, k)| levels[**k].0 == j)
                    .map(|(label, _)| label.clone())
                    .collect();
                if !path.is_empty() {
                    *c = index[j][path.as_slice()];
                }
            }
            facts.push((coords, cell));
        }
    }
    let measures: Vec<Measure> = definition
        .measures
        .iter()
        .map(|m| Measure {
            name: m.name.clone(),
            kind: m.kind,
        })
        .collect();
    let cube = Cube::new(dims, measures, facts).map_err(|e| TableError::Cells(id.clone(), e))?;
    // The suppression and the audit are CPU work: off the async threads.
    let protection = {
        let (cube, spec) = (cube.clone(), definition.clone());
        tokio::task::spawn_blocking(move || {
            let neighbours: Vec<Neighbour<'_>> = beside
                .iter()
                .map(|(truth, other)| Neighbour {
                    cube: other,
                    hidden: truth.hidden.clone(),
                    primaries: truth.primaries.clone(),
                    profile: truth.spec.profile.clone(),
                    // The version it replaces (same id), or a linked table of the source.
                    links: if truth.spec.id == spec.id {
                        super::linked::version_links(&spec, &cube, &truth.spec, other)
                    } else {
                        super::linked::links(&spec, &cube, &truth.spec, other)
                    },
                })
                .collect();
            protect_with(&cube, &spec.profile, &neighbours)
        })
        .await
        .map_err(|e| TableError::Compute(id.clone(), e.to_string()))?
        .map_err(|e| TableError::Unprotected(id.clone(), e))?
    };
    let batch = publish(definition, &cube, &protection)
        .map_err(|e| TableError::Compute(id.clone(), e.to_string()))?;
    Ok(PublishedTable {
        id,
        cube,
        protection,
        batch,
        previous: None,
        linked: Vec::new(),
    })
}

/// `"name"` quoted for SQL (names are validated lower-case identifiers; quoting is belt and
/// braces).
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The SQL giving a dimension's label (text; NULL leaves the row out of the table).
fn dimension_sql(d: &TableDimension) -> String {
    let c = quoted(&d.column);
    let bands = |value: String, bounds: &[i64]| {
        let mut sql = format!(
            "CASE WHEN {value} IS NULL OR {value} < {} THEN NULL",
            bounds[0]
        );
        for w in bounds.windows(2) {
            sql.push_str(&format!(
                " WHEN {value} < {} THEN '{}-{}'",
                w[1],
                w[0],
                w[1] - 1
            ));
        }
        let last = bounds[bounds.len() - 1];
        sql.push_str(&format!(" ELSE '{last}+' END"));
        sql
    };
    match &d.derivation {
        Derivation::Value => format!("CAST({c} AS VARCHAR)"),
        Derivation::Prefix { n } => format!("substr(CAST({c} AS VARCHAR), 1, {n})"),
        Derivation::Bands { bounds } => bands(format!("CAST({c} AS DOUBLE)"), bounds),
        Derivation::AgeBands { at, bounds } => {
            let at = quoted(at);
            // Whole years between the birth date and `at`.
            let age = format!(
                "(date_part('year', {at}) - date_part('year', {c}) - CASE WHEN date_part('month', {at}) * 100 + date_part('day', {at}) < date_part('month', {c}) * 100 + date_part('day', {c}) THEN 1 ELSE 0 END)"
            );
            bands(age, bounds)
        }
        Derivation::Icd10Chapter => {
            let code = format!("upper(substr(CAST({c} AS VARCHAR), 1, 3))");
            let mut sql = format!("CASE WHEN {code} < 'A00' OR {code} > 'Z99' THEN NULL");
            for (below, chapter) in ICD10_CHAPTERS {
                sql.push_str(&format!(" WHEN {code} < '{below}' THEN '{chapter}'"));
            }
            sql.push_str(" ELSE 'XXI' END");
            sql
        }
        Derivation::NafSection => {
            let division = format!("try_cast(substr(CAST({c} AS VARCHAR), 1, 2) AS INT)");
            let mut sql = format!("CASE WHEN {division} IS NULL OR {division} < 1 THEN NULL");
            for (last, section) in NAF_SECTIONS {
                sql.push_str(&format!(" WHEN {division} <= {last} THEN '{section}'"));
            }
            sql.push_str(" ELSE NULL END");
            sql
        }
    }
}

/// ICD-10 chapters by the first code past them (`Z00` and above: XXI).
const ICD10_CHAPTERS: [(&str, &str); 21] = [
    ("C00", "I"),
    ("D50", "II"),
    ("E00", "III"),
    ("F00", "IV"),
    ("G00", "V"),
    ("H00", "VI"),
    ("H60", "VII"),
    ("I00", "VIII"),
    ("J00", "IX"),
    ("K00", "X"),
    ("L00", "XI"),
    ("M00", "XII"),
    ("N00", "XIII"),
    ("O00", "XIV"),
    ("P00", "XV"),
    ("Q00", "XVI"),
    ("R00", "XVII"),
    ("S00", "XVIII"),
    ("U00", "XIX"),
    ("V00", "XXII"),
    ("Z00", "XX"),
];

/// NAF rév. 2 sections by their last division.
const NAF_SECTIONS: [(u32, &str); 21] = [
    (3, "A"),
    (9, "B"),
    (33, "C"),
    (35, "D"),
    (39, "E"),
    (43, "F"),
    (47, "G"),
    (53, "H"),
    (56, "I"),
    (63, "J"),
    (66, "K"),
    (68, "L"),
    (75, "M"),
    (82, "N"),
    (84, "O"),
    (85, "P"),
    (88, "Q"),
    (93, "R"),
    (96, "S"),
    (98, "T"),
    (99, "U"),
];

/// Where a label sorts among its dimension's values: bands by their lower bound, ICD-10
/// chapters by number, anything else as text.
fn label_order(derivation: &Derivation, label: &str) -> (i64, String) {
    match derivation {
        Derivation::Bands { .. } | Derivation::AgeBands { .. } => {
            let low = label
                .split(['-', '+'])
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(i64::MAX);
            (low, label.to_string())
        }
        Derivation::Icd10Chapter => (roman(label), label.to_string()),
        _ => (0, label.to_string()),
    }
}

/// The value of a Roman numeral up to XXII (0 when it is not one).
fn roman(text: &str) -> i64 {
    let digit = |c: char| match c {
        'I' => 1,
        'V' => 5,
        'X' => 10,
        _ => 0,
    };
    let values: Vec<i64> = text.chars().map(digit).collect();
    if values.contains(&0) {
        return 0;
    }
    let mut total = 0;
    for (i, v) in values.iter().enumerate() {
        if values.get(i + 1).is_some_and(|next| next > v) {
            total -= v;
        } else {
            total += v;
        }
    }
    total
}

/// The string keys of a grouping-set row (its first `k` columns).
fn labels(batch: &RecordBatch, k: usize, row: usize) -> Vec<String> {
    (0..k)
        .map(|j| {
            let column = batch.column(j);
            match column.as_string_opt::<i32>() {
                Some(s) => s.value(row).to_string(),
                None => column.as_string_view().value(row).to_string(),
            }
        })
        .collect()
}

/// The published batch: every cell (margins labelled `Ensemble`), each measure's value or NULL,
/// and its flag.
pub fn publish(
    spec: &TableSpec,
    cube: &Cube,
    protection: &Protection,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (j, (dim, d)) in cube.dims().iter().zip(&spec.dimensions).enumerate() {
        // One column per level: a value's label at its level and above, `Ensemble` below.
        for (level, l) in d.levels().enumerate() {
            fields.push(Field::new(&l.name, DataType::Utf8, false));
            let mut b = StringBuilder::new();
            for i in 0..cube.len() {
                let path = dim.path(cube.coords(i)[j]);
                b.append_value(path.get(level).copied().unwrap_or(TOTAL_LABEL));
            }
            columns.push(Arc::new(b.finish()));
        }
    }
    for (m, measure) in cube.measures().iter().enumerate() {
        let hidden = |i: usize| protection.secrets[i].is_some();
        if measure.kind.is_count() {
            fields.push(Field::new(&measure.name, DataType::Int64, true));
            let mut b = Int64Builder::new();
            for i in 0..cube.len() {
                b.append_option((!hidden(i)).then(|| cube.value(i, m) as i64));
            }
            columns.push(Arc::new(b.finish()));
        } else {
            fields.push(Field::new(&measure.name, DataType::Float64, true));
            let mut b = Float64Builder::new();
            for i in 0..cube.len() {
                b.append_option((!hidden(i)).then(|| cube.value(i, m)));
            }
            columns.push(Arc::new(b.finish()));
        }
        fields.push(Field::new(
            format!("{}_secret", measure.name),
            DataType::Utf8,
            true,
        ));
        let mut b = StringBuilder::new();
        for secret in &protection.secrets {
            b.append_option(secret.map(|s| s.flag()));
        }
        columns.push(Arc::new(b.finish()));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
