//! `tables.toml`: the tables of the statistical secret, defined in advance by operators.
//!
//! A table is computed by the hub from one microdata dataset (its `source`), protected as a
//! whole by `secrecy` and published; aggregate-only habilitations read tables, never the
//! microdata. A table is declared here in a typed form (dimensions as a column and one of a
//! few derivations, measures as counts or sums of a column, the statistical unit, a secrecy
//! profile), never as free SQL, so that every name is checked against the catalog and the
//! engine builds its queries from known parts only.
//!
//! Each table becomes a dataset of the catalog (`DatasetKind::Table`) whose columns are its
//! dimensions (labels, margins `Ensemble`), its measures and their `<measure>_secret` flags,
//! all of class `public`: rules grant it with the `aggregate` act like any dataset, and
//! explain and diffs show it with the rest.
//!
//! Owns: parsing and validating `tables.toml` (`file:line` problems), the profiles in force
//! (built-in ones, overridden by the file's `[profiles.<name>]`), the catalog entries of
//! tables. Must never: read data or touch DataFusion (the engine computes the tables).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::catalog::{
    Catalog, ColumnClass, Constraints, Dataset, DatasetKind, Field, FieldType, is_dataset_name,
};
use super::source::{Problem, line_of};
use crate::secrecy::{MeasureKind, Profile};

/// Most dimensions a table may have (the hub runs one query per subset of them).
pub const MAX_DIMENSIONS: usize = 4;

/// How a dimension's label is derived from its column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Derivation {
    /// The column's value as text.
    Value,
    /// Its first `n` characters (the département of a commune code: 2; the ICD-10 letter: 1).
    Prefix { n: u32 },
    /// The band of a number: `bounds` `[0, 18, 40]` give `0-17`, `18-39`, `40+`.
    Bands { bounds: Vec<i64> },
    /// The band of an age in whole years between a birth date (the column) and the date in
    /// column `at`.
    AgeBands { at: String, bounds: Vec<i64> },
    /// The ICD-10 chapter (`I` to `XXII`) of a diagnosis code.
    Icd10Chapter,
    /// The NAF rev. 2 section (`A` to `U`) of an activity code (`56.10A` → `I`).
    NafSection,
}

/// One dimension of a table: its finest level, and where it is a hierarchy (NAF division →
/// section, commune → département → région), the coarser levels it nests in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDimension {
    pub name: String,
    pub title: String,
    pub column: String,
    pub derivation: Derivation,
    /// The coarser levels, coarsest first (each a published column too, with no `within`
    /// of its own); empty for a flat dimension.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub within: Vec<TableDimension>,
}

impl TableDimension {
    /// Its levels, coarsest first, this one last.
    pub fn levels(&self) -> impl Iterator<Item = &TableDimension> {
        self.within.iter().chain(std::iter::once(self))
    }
}

/// Most levels of one dimension (the finest included).
pub const MAX_LEVELS: usize = 3;

/// Most grouping sets of a table (the product over its dimensions of their levels plus one):
/// each is one query over the source.
pub const MAX_GROUPINGS: usize = 64;

/// One measure of a table: rows, distinct units, or the sum of a non-negative column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableMeasure {
    pub name: String,
    pub title: String,
    pub kind: MeasureKind,
    /// The summed column (`sum` only).
    pub column: Option<String>,
    /// `sum` only: the column holds one value per unit, repeated on each of its rows (a
    /// household's tax on each member's row), and is summed once per unit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_unit: bool,
}

/// A table as an operator defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    /// `schema.table`, e.g. `stats.sejours_region_age_chapitre`.
    pub id: String,
    pub title: String,
    pub description: String,
    /// The microdata dataset it is computed from.
    pub source: String,
    /// The column of the statistical unit (patient, household, company).
    pub unit: String,
    pub dimensions: Vec<TableDimension>,
    pub measures: Vec<TableMeasure>,
    /// The profile's name and its rules in force.
    pub profile_name: String,
    pub profile: Profile,
}

impl TableSpec {
    /// The definition in one line, for diffs and explain: source, unit, profile and its rules,
    /// dimensions with their derivations, measures.
    pub fn summary(&self) -> String {
        let p = &self.profile;
        let mut rules = format!("at least {} units", p.min_units);
        if let Some(d) = p.dominance {
            rules.push_str(&format!(", no unit above {}%", d * 100.0));
        }
        if p.empty_is_secret {
            rules.push_str(", empty cells secret");
        }
        rules.push_str(&format!(
            ", sums kept {}% uncertain",
            p.magnitude_margin * 100.0
        ));
        let level = |d: &TableDimension| match &d.derivation {
            Derivation::Value => d.column.clone(),
            Derivation::Prefix { n } => format!("{} (first {n})", d.column),
            Derivation::Bands { bounds } => format!("{} (bands {bounds:?})", d.column),
            Derivation::AgeBands { at, bounds } => {
                format!("{} (age at {at}, bands {bounds:?})", d.column)
            }
            Derivation::Icd10Chapter => format!("{} (ICD-10 chapter)", d.column),
            Derivation::NafSection => format!("{} (NAF section)", d.column),
        };
        let dimensions: Vec<String> = self
            .dimensions
            .iter()
            .map(|d| d.levels().map(level).collect::<Vec<_>>().join(" > "))
            .collect();
        let measures: Vec<String> = self
            .measures
            .iter()
            .map(|m| match &m.column {
                Some(c) if m.per_unit => format!("{} (sum of {c}, once per unit)", m.name),
                Some(c) => format!("{} (sum of {c})", m.name),
                None => format!(
                    "{} ({})",
                    m.name,
                    if m.kind == MeasureKind::Rows {
                        "rows"
                    } else {
                        "units"
                    }
                ),
            })
            .collect();
        format!(
            "from {} by unit {}, profile {} ({rules}); dimensions {}; measures {}",
            self.source,
            self.unit,
            self.profile_name,
            dimensions.join(", "),
            measures.join(", ")
        )
    }

    /// The catalog entry readers see: dimensions, measures and flags, all `public`.
    fn dataset(&self) -> Dataset {
        let field = |name: &str, title: &str, field_type: FieldType, description: &str| Field {
            name: Spanned::new(0..0, name.to_string()),
            title: title.to_string(),
            description: description.to_string(),
            field_type,
            format: None,
            example: None,
            class: ColumnClass::Public,
            constraints: Constraints::default(),
        };
        let mut fields: Vec<Field> = self
            .dimensions
            .iter()
            .flat_map(TableDimension::levels)
            .map(|d| {
                field(
                    &d.name,
                    &d.title,
                    FieldType::String,
                    "Dimension (or one level of a hierarchy); `Ensemble` on a margin.",
                )
            })
            .collect();
        for m in &self.measures {
            let kind = if m.kind.is_count() {
                FieldType::Integer
            } else {
                FieldType::Number
            };
            fields.push(field(
                &m.name,
                &m.title,
                kind,
                "NULL when hidden (see the flag).",
            ));
            fields.push(field(
                &format!("{}_secret", m.name),
                &format!("{} : secret", m.title),
                FieldType::String,
                "`primary` (the cell breaks the profile's rule), `secondary` (hidden to protect one), NULL (published).",
            ));
        }
        Dataset {
            name: Spanned::new(0..0, self.id.clone()),
            title: self.title.clone(),
            description: self.description.clone(),
            path: published_path(&self.id),
            secret: format!("statistical ({})", self.profile_name),
            legal_basis: None,
            primary_key: self
                .dimensions
                .iter()
                .flat_map(TableDimension::levels)
                .map(|d| d.name.clone())
                .collect(),
            fields,
            kind: DatasetKind::Table,
        }
    }
}

/// Where the published version of table `id` lives, relative to the data folder.
pub fn published_path(id: &str) -> PathBuf {
    Path::new(PUBLISHED_DIR).join(format!("{id}.parquet"))
}

/// The folder of published tables inside the data folder.
pub const PUBLISHED_DIR: &str = ".tables";

/// The tables folder of data folder `data_dir` when `data.tables_dir` names none.
pub fn default_tables_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(PUBLISHED_DIR)
}

/// The tables of a policy version.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tables {
    pub list: Vec<TableSpec>,
}

impl Tables {
    pub fn get(&self, id: &str) -> Option<&TableSpec> {
        self.list.iter().find(|t| t.id == id)
    }

    /// Parses and validates `text` (`file` names it in problems) against the microdata
    /// datasets of `catalog`, and adds a dataset per table to it.
    pub fn parse(file: &Path, text: &str, catalog: &mut Catalog) -> Result<Tables, Vec<Problem>> {
        if text.trim().is_empty() {
            return Ok(Tables::default());
        }
        let parsed: TablesFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            vec![Problem::new(file, line, e.message().to_string())]
        })?;
        let mut problems = Vec::new();
        let mut profiles: BTreeMap<String, Profile> = Profile::NAMES
            .iter()
            .filter_map(|n| Some((n.to_string(), Profile::named(n)?)))
            .collect();
        for (name, profile) in &parsed.profiles {
            let line = Some(line_of(text, name.span().start));
            for (key, message) in profile.get_ref().problems() {
                problems.push(Problem::new(
                    file,
                    line,
                    format!("profile `{}`: {key} {message}", name.get_ref()),
                ));
            }
            profiles.insert(name.get_ref().clone(), profile.get_ref().clone());
        }
        let mut list = Vec::new();
        let mut ids = HashSet::new();
        for table in parsed.tables {
            let line = Some(line_of(text, table.id.span().start));
            let id = table.id.get_ref().clone();
            let mut bad =
                |m: String| problems.push(Problem::new(file, line, format!("table `{id}`: {m}")));
            if !is_dataset_name(&id) {
                bad("ids are `schema.table` in lower case (a-z, 0-9, _)".into());
            }
            if !ids.insert(id.clone()) || catalog.dataset(&id).is_some() {
                bad("this name is already a table or a dataset".into());
            }
            let source = catalog
                .dataset(&table.source)
                .filter(|d| d.kind == DatasetKind::Microdata);
            let Some(source) = source else {
                bad(format!(
                    "source `{}` is not a dataset of datasets.toml",
                    table.source
                ));
                continue;
            };
            let has = |column: &str| source.field(column).is_some();
            if !has(&table.unit) {
                bad(format!(
                    "unit `{}` is not a column of `{}`",
                    table.unit, table.source
                ));
            }
            let profile = match profiles.get(&table.profile) {
                Some(p) => p.clone(),
                None => {
                    bad(format!(
                        "unknown profile `{}` (built in: {}; or define [profiles.{}])",
                        table.profile,
                        Profile::NAMES.join(", "),
                        table.profile
                    ));
                    continue;
                }
            };
            if table.dimensions.is_empty() || table.dimensions.len() > MAX_DIMENSIONS {
                bad(format!("a table has 1 to {MAX_DIMENSIONS} dimensions"));
            }
            if table.measures.is_empty() {
                bad("a table has at least one measure".into());
            }
            let mut names = HashSet::new();
            let mut dimensions = Vec::new();
            let groupings: usize = table
                .dimensions
                .iter()
                .map(|d| d.within.as_ref().map_or(0, Vec::len) + 2)
                .product();
            if groupings > MAX_GROUPINGS {
                bad(format!(
                    "{groupings} combinations of levels: at most {MAX_GROUPINGS} (fewer dimensions or levels)"
                ));
            }
            for mut d in table.dimensions {
                let within = d.within.take().unwrap_or_default();
                if within.len() + 1 > MAX_LEVELS {
                    bad(format!(
                        "dimension `{}`: at most {MAX_LEVELS} levels",
                        d.name
                    ));
                }
                let mut levels = Vec::new();
                for level in within {
                    if level.within.is_some() {
                        bad(format!(
                            "dimension `{}`: level `{}` has no `within` of its own (list every level in one `within`, coarsest first)",
                            d.name, level.name
                        ));
                    }
                    levels.extend(level.parse(
                        &mut names,
                        &has,
                        &table.source,
                        &mut bad,
                        Vec::new(),
                    ));
                }
                dimensions.extend(d.parse(&mut names, &has, &table.source, &mut bad, levels));
            }
            let mut measures = Vec::new();
            for m in table.measures {
                if !is_column_name(&m.name)
                    || m.name.ends_with("_secret")
                    || !names.insert(m.name.clone())
                {
                    bad(format!(
                        "measure `{}`: names are unique, lower case (a-z, 0-9, _), not ending in `_secret`",
                        m.name
                    ));
                }
                match (&m.kind, &m.column) {
                    (MeasureKind::Sum, Some(c)) if has(c) => {}
                    (MeasureKind::Sum, Some(c)) => bad(format!(
                        "measure `{}`: `{c}` is not a column of `{}`",
                        m.name, table.source
                    )),
                    (MeasureKind::Sum, None) => {
                        bad(format!("measure `{}`: a sum names its `column`", m.name))
                    }
                    (_, Some(_)) => bad(format!(
                        "measure `{}`: a count names no `column` (rows counts rows, units the table's unit)",
                        m.name
                    )),
                    (_, None) => {}
                }
                if m.per_unit && m.kind != MeasureKind::Sum {
                    bad(format!(
                        "measure `{}`: only a sum is taken once per unit (`per_unit`)",
                        m.name
                    ));
                }
                measures.push(TableMeasure {
                    title: m.title.unwrap_or_else(|| m.name.clone()),
                    name: m.name,
                    kind: m.kind,
                    column: m.column,
                    per_unit: m.per_unit,
                });
            }
            list.push(TableSpec {
                id,
                title: table.title,
                description: table.description,
                source: table.source,
                unit: table.unit,
                dimensions,
                measures,
                profile_name: table.profile,
                profile,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        for spec in &list {
            catalog.datasets.push(spec.dataset());
        }
        Ok(Tables { list })
    }
}

/// Lower-case SQL identifier (a-z, 0-9, _; not starting with a digit).
fn is_column_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TablesFile {
    #[serde(default)]
    profiles: BTreeMap<Spanned<String>, Spanned<Profile>>,
    #[serde(default)]
    tables: Vec<TableEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableEntry {
    id: Spanned<String>,
    title: String,
    #[serde(default)]
    description: String,
    source: String,
    unit: String,
    profile: String,
    dimensions: Vec<DimensionEntry>,
    measures: Vec<MeasureEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DimensionEntry {
    name: String,
    #[serde(default)]
    title: Option<String>,
    column: String,
    #[serde(default)]
    prefix: Option<u32>,
    #[serde(default)]
    bands: Option<Vec<i64>>,
    /// With `bands`: the column is a birth date, banded by age at this date column.
    #[serde(default)]
    age_at: Option<String>,
    /// `icd10_chapter` or `naf_section`.
    #[serde(default)]
    code: Option<String>,
    /// The coarser levels this dimension nests in, coarsest first.
    #[serde(default)]
    within: Option<Vec<DimensionEntry>>,
}

impl DimensionEntry {
    /// The dimension (or level) this entry defines, its problems reported through `bad`.
    fn parse(
        self,
        names: &mut HashSet<String>,
        has: &dyn Fn(&str) -> bool,
        source: &str,
        bad: &mut dyn FnMut(String),
        within: Vec<TableDimension>,
    ) -> Option<TableDimension> {
        if !is_column_name(&self.name) || !names.insert(self.name.clone()) {
            bad(format!(
                "dimension `{}`: names are unique, lower case (a-z, 0-9, _)",
                self.name
            ));
        }
        if !has(&self.column) {
            bad(format!(
                "dimension `{}`: `{}` is not a column of `{source}`",
                self.name, self.column
            ));
        }
        match self.derivation() {
            Ok(derivation) => {
                if let Derivation::AgeBands { at, .. } = &derivation
                    && !has(at)
                {
                    bad(format!(
                        "dimension `{}`: `{at}` is not a column of `{source}`",
                        self.name
                    ));
                }
                Some(TableDimension {
                    title: self.title.unwrap_or_else(|| self.name.clone()),
                    name: self.name,
                    column: self.column,
                    derivation,
                    within,
                })
            }
            Err(m) => {
                bad(format!("dimension `{}`: {m}", self.name));
                None
            }
        }
    }

    fn derivation(&self) -> Result<Derivation, String> {
        let bands = |b: &Vec<i64>| {
            if b.is_empty() || b.windows(2).any(|w| w[0] >= w[1]) {
                Err("`bands` are increasing bounds, at least one".to_string())
            } else {
                Ok(b.clone())
            }
        };
        match (&self.prefix, &self.bands, &self.age_at, &self.code) {
            (None, None, None, None) => Ok(Derivation::Value),
            (Some(n), None, None, None) if (1..=16).contains(n) => Ok(Derivation::Prefix { n: *n }),
            (Some(_), None, None, None) => Err("`prefix` is 1 to 16 characters".into()),
            (None, Some(b), None, None) => Ok(Derivation::Bands { bounds: bands(b)? }),
            (None, Some(b), Some(at), None) => Ok(Derivation::AgeBands {
                at: at.clone(),
                bounds: bands(b)?,
            }),
            (None, None, None, Some(code)) => match code.as_str() {
                "icd10_chapter" => Ok(Derivation::Icd10Chapter),
                "naf_section" => Ok(Derivation::NafSection),
                other => Err(format!(
                    "unknown code `{other}` (icd10_chapter, naf_section)"
                )),
            },
            (None, None, Some(_), None) => Err("`age_at` goes with `bands`".into()),
            _ => Err("one derivation at most: `prefix`, `bands` (with `age_at`) or `code`".into()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MeasureEntry {
    name: String,
    #[serde(default)]
    title: Option<String>,
    kind: MeasureKind,
    #[serde(default)]
    column: Option<String>,
    #[serde(default)]
    per_unit: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::parse(
            Path::new("datasets.toml"),
            include_str!("../../policies/datasets.toml"),
        )
        .unwrap()
    }

    const SEJOURS: &str = r#"
[[tables]]
id = "stats.sejours_region_chapitre"
title = "Séjours par région et chapitre"
source = "sante.sejours"
unit = "nir"
profile = "medical"
dimensions = [
  { name = "region", column = "region" },
  { name = "chapitre", column = "diagnostic", code = "icd10_chapter" },
]
measures = [
  { name = "sejours", kind = "rows" },
  { name = "patients", kind = "units" },
]
"#;

    #[test]
    fn a_table_becomes_a_public_dataset_of_the_catalog() {
        let mut catalog = catalog();
        let tables = Tables::parse(Path::new("tables.toml"), SEJOURS, &mut catalog).unwrap();
        assert_eq!(tables.list.len(), 1);
        let d = catalog.dataset("stats.sejours_region_chapitre").unwrap();
        assert_eq!(d.kind, DatasetKind::Table);
        let names: Vec<&str> = d.fields.iter().map(|f| f.name.get_ref().as_str()).collect();
        assert_eq!(
            names,
            [
                "region",
                "chapitre",
                "sejours",
                "sejours_secret",
                "patients",
                "patients_secret"
            ]
        );
        assert!(d.fields.iter().all(|f| f.class == ColumnClass::Public));
        assert_eq!(tables.list[0].profile.min_units, 11);
    }

    #[test]
    fn every_mistake_is_reported_at_its_line() {
        let text = r#"
[profiles.strict]
min_units = 0

[[tables]]
id = "stats.t"
title = "t"
source = "sante.inconnu"
unit = "nir"
profile = "medical"
dimensions = [{ name = "region", column = "region" }]
measures = [{ name = "n", kind = "rows" }]

[[tables]]
id = "sante.sejours"
title = "t"
source = "sante.sejours"
unit = "personne"
profile = "secret"
dimensions = [{ name = "r", column = "region" }]
measures = [{ name = "n", kind = "rows" }]

[[tables]]
id = "stats.u"
title = "u"
source = "sante.sejours"
unit = "nir"
profile = "medical"
dimensions = [{ name = "r", column = "nulle_part", prefix = 2, code = "naf_section" }]
measures = [{ name = "n_secret", kind = "sum" }, { name = "m", kind = "rows", per_unit = true }]
"#;
        let problems = Tables::parse(Path::new("tables.toml"), text, &mut catalog()).unwrap_err();
        let shown: Vec<String> = problems.iter().map(Problem::named).collect();
        let expect = [
            "tables.toml:2: profile `strict`: min_units must be at least 1",
            "tables.toml:6: table `stats.t`: source `sante.inconnu` is not a dataset",
            "tables.toml:15: table `sante.sejours`: this name is already a table or a dataset",
            "tables.toml:15: table `sante.sejours`: unit `personne` is not a column",
            "tables.toml:15: table `sante.sejours`: unknown profile `secret`",
            "tables.toml:24: table `stats.u`: dimension `r`: `nulle_part` is not a column",
            "tables.toml:24: table `stats.u`: dimension `r`: one derivation at most",
            "tables.toml:24: table `stats.u`: measure `n_secret`: names are unique",
            "tables.toml:24: table `stats.u`: measure `n_secret`: a sum names its `column`",
            "tables.toml:24: table `stats.u`: measure `m`: only a sum is taken once per unit",
        ];
        for e in expect {
            assert!(shown.iter().any(|s| s.starts_with(e)), "{e}\nin {shown:#?}");
        }
    }

    #[test]
    fn a_looser_profile_shows_in_the_summary() {
        let mut catalog = catalog();
        let strict = Tables::parse(Path::new("tables.toml"), SEJOURS, &mut catalog).unwrap();
        let looser = SEJOURS.to_string() + "\n[profiles.medical]\nmin_units = 5\n";
        let loose = Tables::parse(
            Path::new("tables.toml"),
            &looser,
            &mut super::super::catalog::Catalog::parse(
                Path::new("datasets.toml"),
                include_str!("../../policies/datasets.toml"),
            )
            .unwrap(),
        )
        .unwrap();
        let (a, b) = (strict.list[0].summary(), loose.list[0].summary());
        assert!(
            a.contains("at least 11 units") && b.contains("at least 5 units"),
            "{a}\n{b}"
        );
        assert!(a.contains("diagnostic (ICD-10 chapter)"), "{a}");
    }

    #[test]
    fn a_hierarchy_is_one_dimension_with_a_column_per_level() {
        let text = r#"
[[tables]]
id = "stats.h"
title = "h"
source = "entreprises.etablissements"
unit = "siren"
profile = "business"
dimensions = [
  { name = "division", column = "naf", prefix = 2, within = [{ name = "section", column = "naf", code = "naf_section" }] },
  { name = "region", column = "region" },
]
measures = [{ name = "n", kind = "rows" }]
"#;
        let mut c = catalog();
        let tables = Tables::parse(Path::new("tables.toml"), text, &mut c).unwrap();
        let spec = &tables.list[0];
        let levels: Vec<&str> = spec.dimensions[0]
            .levels()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(levels, ["section", "division"]);
        assert!(
            spec.summary().contains("naf (NAF section) > naf (first 2)"),
            "{}",
            spec.summary()
        );
        let d = c.dataset("stats.h").unwrap();
        assert_eq!(d.primary_key, ["section", "division", "region"]);
        // Nested `within`, too many levels, a level named twice: refused at the line.
        let bad = r#"
[[tables]]
id = "stats.h"
title = "h"
source = "entreprises.etablissements"
unit = "siren"
profile = "business"
dimensions = [
  { name = "a", column = "naf", within = [{ name = "b", column = "naf", within = [] }, { name = "c", column = "naf" }, { name = "region", column = "region" }] },
  { name = "region", column = "region" },
]
measures = [{ name = "n", kind = "rows" }]
"#;
        let problems = Tables::parse(Path::new("tables.toml"), bad, &mut catalog()).unwrap_err();
        let shown: Vec<String> = problems.iter().map(Problem::named).collect();
        for e in [
            "tables.toml:3: table `stats.h`: dimension `a`: at most 3 levels",
            "tables.toml:3: table `stats.h`: dimension `a`: level `b` has no `within`",
            "tables.toml:3: table `stats.h`: dimension `region`: names are unique",
        ] {
            assert!(shown.iter().any(|s| s.starts_with(e)), "{e}\nin {shown:#?}");
        }
    }

    #[test]
    fn no_file_means_no_table() {
        let mut c = catalog();
        let before = c.datasets.len();
        assert_eq!(
            Tables::parse(Path::new("tables.toml"), "\n", &mut c).unwrap(),
            Tables::default()
        );
        assert_eq!(c.datasets.len(), before);
    }
}
