//! The dataset catalog (`datasets.toml`): where each dataset's Parquet lives and what each
//! column is, as a frictionless Table Schema plus a sensitivity class per column.
//!
//! Rules may target a class (`tax_secret`) instead of a column, so a new tax column is covered
//! without a new rule; a column without a class is refused by validation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::source::{PolicyFiles, Problem, line_of};

/// Sensitivity class of a column.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ColumnClass {
    DirectIdentifier,
    QuasiIdentifier,
    MedicalSecret,
    TaxSecret,
    BusinessSecret,
    Public,
}

impl ColumnClass {
    /// The name written in datasets.toml and, after `@`, in policy.csv.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnClass::DirectIdentifier => "direct_identifier",
            ColumnClass::QuasiIdentifier => "quasi_identifier",
            ColumnClass::MedicalSecret => "medical_secret",
            ColumnClass::TaxSecret => "tax_secret",
            ColumnClass::BusinessSecret => "business_secret",
            ColumnClass::Public => "public",
        }
    }
}

/// Table Schema field types used by the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Integer,
    Number,
    Date,
    Boolean,
}

/// Table Schema `constraints` of a field.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub unique: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub enumeration: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum: Option<toml::Value>,
}

/// One column of a dataset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: Spanned<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub example: Option<String>,
    pub class: ColumnClass,
    #[serde(default)]
    pub constraints: Constraints,
}

/// One dataset of the hub.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    pub name: Spanned<String>,
    pub title: String,
    #[serde(default)]
    pub description: String,
    /// Parquet file, relative to the hub's data folder.
    pub path: PathBuf,
    /// The legal secret covering the dataset (medical, tax, social, business, statistical).
    pub secret: String,
    #[serde(default)]
    pub legal_basis: Option<String>,
    #[serde(default)]
    pub primary_key: Vec<String>,
    pub fields: Vec<Field>,
    /// Microdata (datasets.toml) or a table of the statistical secret (tables.toml).
    #[serde(skip)]
    pub kind: DatasetKind,
}

/// What a dataset holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatasetKind {
    /// Records about people or companies: read under `query`, `lookup` and `read` rules.
    #[default]
    Microdata,
    /// A protected table of aggregates (`policy::tables`): read under the `aggregate` act only.
    Table,
}

impl Dataset {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name.get_ref() == name)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    datasets: Vec<Dataset>,
}

/// All datasets of the hub.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub file: PathBuf,
    pub datasets: Vec<Dataset>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

impl Catalog {
    /// `dataset` when this catalog declares its `column` unique: the only columns that can
    /// be lookup keys.
    pub fn key_dataset(&self, dataset: &str, column: &str) -> Option<&Dataset> {
        // SECURITY: only a unique column identifies one record; anything else is no key.
        self.dataset(dataset)
            .filter(|d| d.field(column).is_some_and(|f| f.constraints.unique))
    }

    /// Reads and validates `datasets.toml` in the policy folder.
    pub fn load(policy_dir: &Path) -> Result<Catalog, CatalogError> {
        let file = policy_dir.join(PolicyFiles::DATASETS);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            CatalogError::Invalid(vec![Problem::new(
                &file,
                None,
                format!("cannot read: {}", e.kind()),
            )])
        })?;
        Self::parse(&file, &text).map_err(CatalogError::Invalid)
    }

    /// Parses and validates a catalog text (`file` names it in problems).
    pub fn parse(file: &Path, text: &str) -> Result<Catalog, Vec<Problem>> {
        let parsed: CatalogFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            vec![Problem::new(file, line, e.message().to_string())]
        })?;
        let catalog = Catalog {
            file: file.to_path_buf(),
            datasets: parsed.datasets,
        };
        let problems = catalog.problems(text);
        if problems.is_empty() {
            Ok(catalog)
        } else {
            Err(problems)
        }
    }

    pub fn dataset(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name() == name)
    }

    pub fn names(&self) -> Vec<String> {
        self.datasets.iter().map(|d| d.name().to_string()).collect()
    }

    fn problems(&self, text: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut names = HashSet::new();
        for dataset in &self.datasets {
            let line = Some(line_of(text, dataset.name.span().start));
            let name = dataset.name();
            if !is_dataset_name(name) {
                problems.push(Problem::new(
                    &self.file,
                    line,
                    format!(
                        "dataset `{name}`: names are `schema.table` in lower case (a-z, 0-9, _)"
                    ),
                ));
            }
            if !names.insert(name) {
                problems.push(Problem::new(
                    &self.file,
                    line,
                    format!("dataset `{name}` is declared twice"),
                ));
            }
            if dataset.path.is_absolute()
                || dataset
                    .path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                problems.push(Problem::new(
                    &self.file,
                    line,
                    format!("dataset `{name}`: `path` must stay inside the data folder"),
                ));
            }
            if dataset.fields.is_empty() {
                problems.push(Problem::new(
                    &self.file,
                    line,
                    format!("dataset `{name}` has no fields"),
                ));
            }
            let mut columns = HashSet::new();
            for field in &dataset.fields {
                let fline = Some(line_of(text, field.name.span().start));
                let column = field.name.get_ref();
                if !columns.insert(column.as_str()) {
                    problems.push(Problem::new(
                        &self.file,
                        fline,
                        format!("dataset `{name}`: column `{column}` is declared twice"),
                    ));
                }
                if let Some(pattern) = &field.constraints.pattern
                    && table_schema_pattern(pattern).is_err()
                {
                    {
                        problems.push(Problem::new(
                            &self.file,
                            fline,
                            format!("dataset `{name}`: column `{column}`: `pattern` is not a valid expression"),
                        ));
                    }
                }
            }
            for key in &dataset.primary_key {
                if dataset.field(key).is_none() {
                    problems.push(Problem::new(
                        &self.file,
                        line,
                        format!("dataset `{name}`: primary key `{key}` is not a column"),
                    ));
                }
            }
        }
        problems
    }

    /// Checks that each dataset's Parquet file exists under `data_dir` and that its columns and
    /// types match the catalog. For `passerelle check` and start-up. (Tables of the statistical
    /// secret are written by the hub itself, after start: not checked here.)
    pub fn check_files(&self, data: &dyn CatalogFiles) -> Vec<Problem> {
        let mut problems = Vec::new();
        for dataset in self
            .datasets
            .iter()
            .filter(|d| d.kind == DatasetKind::Microdata)
        {
            let (path, schema) = data.schema_of(&dataset.path);
            let name = dataset.name();
            let schema = match schema {
                Ok(schema) => schema,
                Err(reason) => {
                    problems.push(Problem::new(
                        &path,
                        None,
                        format!("dataset `{name}`: {reason}"),
                    ));
                    continue;
                }
            };
            for field in &dataset.fields {
                let column = field.name.get_ref();
                match schema.field_with_name(column) {
                    Err(_) => problems.push(Problem::new(
                        &path,
                        None,
                        format!("dataset `{name}`: column `{column}` is in the catalog but not in the file"),
                    )),
                    Ok(f) if !type_fits(field.field_type, f.data_type()) => problems.push(Problem::new(
                        &path,
                        None,
                        format!(
                            "dataset `{name}`: column `{column}` is {} in the file but `{:?}` in the catalog",
                            f.data_type(),
                            field.field_type
                        ),
                    )),
                    Ok(_) => {}
                }
            }
            for f in schema.fields() {
                if dataset.field(f.name()).is_none() {
                    problems.push(Problem::new(
                        &path,
                        None,
                        format!(
                            "dataset `{name}`: column `{}` is in the file but not in the catalog (it would have no class)",
                            f.name()
                        ),
                    ));
                }
            }
        }
        problems
    }
}

pub(crate) fn is_dataset_name(name: &str) -> bool {
    let mut parts = name.split('.');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && p.as_bytes()[0].is_ascii_lowercase()
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// A Table Schema `pattern` compiled as it applies: to the whole value. Compiled once per
/// pattern and shared (lookups check every key against it).
pub fn table_schema_pattern(pattern: &str) -> Result<std::sync::Arc<regex::Regex>, regex::Error> {
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, RwLock};
    static COMPILED: LazyLock<RwLock<HashMap<String, Arc<regex::Regex>>>> =
        LazyLock::new(Default::default);
    if let Some(re) = COMPILED
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(pattern)
    {
        return Ok(re.clone());
    }
    // Size-limited like the engine's regular expressions: a catalog cannot exhaust memory.
    let re = Arc::new(
        regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(1 << 20)
            .build()?,
    );
    let mut map = COMPILED.write().unwrap_or_else(|p| p.into_inner());
    // Patterns come from the operator's catalog: few, but bound the cache anyway.
    if map.len() > 1024 {
        map.clear();
    }
    map.insert(pattern.to_string(), re.clone());
    Ok(re)
}

/// Where the catalog's data files are: a local folder (`data.dir`), or the hub's bucket
/// (`data.url`, in `storage`), for the readers that check them or need them as local files.
pub trait CatalogFiles: Send + Sync + std::fmt::Debug {
    /// What to name in a problem about catalog path `path`, and its file's Arrow schema or
    /// why it cannot be read.
    fn schema_of(
        &self,
        path: &Path,
    ) -> (
        std::path::PathBuf,
        Result<arrow::datatypes::SchemaRef, String>,
    );

    /// The current version of `path` as a local file, for readers that need one (lookups,
    /// tables of the statistical secret): the file itself, or a local copy of the object
    /// (made on first need; blocking: call it off the async runtime).
    fn local_file(&self, path: &Path) -> Result<std::path::PathBuf, String>;

    /// The local file of `path`'s last known version, with neither the store nor the disk:
    /// `None` when there is none yet. (On a bucket it may be up to a second behind the store,
    /// or until the next [`Self::local_file`]: readers that must see a replacement at once
    /// call that.)
    fn known_local_file(&self, path: &Path) -> Option<std::path::PathBuf>;
}

/// A local data folder.
impl CatalogFiles for std::path::PathBuf {
    fn schema_of(
        &self,
        path: &Path,
    ) -> (
        std::path::PathBuf,
        Result<arrow::datatypes::SchemaRef, String>,
    ) {
        let file = self.join(path);
        let schema = parquet_arrow_schema(&file);
        (file, schema)
    }

    fn local_file(&self, path: &Path) -> Result<std::path::PathBuf, String> {
        Ok(self.join(path))
    }

    fn known_local_file(&self, path: &Path) -> Option<std::path::PathBuf> {
        Some(self.join(path))
    }
}

/// The Arrow schema of a Parquet file (the engine's raw schema).
pub fn parquet_arrow_schema(path: &Path) -> Result<arrow::datatypes::SchemaRef, String> {
    parquet_footer(path).map(|footer| footer.schema.clone())
}

/// The compressed bytes of each top-level column of a Parquet file (in its Arrow schema's
/// order, all row groups together): what a scan of some of its columns reads. `None` when
/// the file cannot be read or its columns do not match its schema's fields one for one.
pub fn parquet_column_bytes(path: &Path) -> Option<std::sync::Arc<[u64]>> {
    parquet_footer(path).ok()?.column_bytes.clone()
}

/// What the engine keeps of a Parquet file's footer.
struct Footer {
    schema: arrow::datatypes::SchemaRef,
    column_bytes: Option<std::sync::Arc<[u64]>>,
}

/// A Parquet file's footer, decoded once per file while its size and modification time stay
/// the same: every query builds its session from these schemas, and decoding a footer
/// (100 KB for 80 row groups) each time cost 14 % of a small query's CPU. A replaced file is
/// read again.
fn parquet_footer(path: &Path) -> Result<std::sync::Arc<Footer>, String> {
    use crate::file_stamp::FileStamp;
    use std::collections::HashMap;
    use std::sync::{Arc, LazyLock, Mutex};
    type Footers = HashMap<std::path::PathBuf, (FileStamp, Arc<Footer>)>;
    static FOOTERS: LazyLock<Mutex<Footers>> = LazyLock::new(Default::default);
    let stamp = FileStamp::of(path);
    if let Some(stamp) = stamp
        && let Some((known, footer)) = FOOTERS.lock().unwrap_or_else(|p| p.into_inner()).get(path)
        && *known == stamp
    {
        return Ok(footer.clone());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {}", e.kind()))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|_| "not a readable Parquet file".to_string())?;
    let schema = builder.schema().clone();
    let column_bytes = column_bytes(builder.metadata(), schema.fields().len());
    let footer = Arc::new(Footer {
        schema,
        column_bytes,
    });
    if let Some(stamp) = stamp {
        let mut footers = FOOTERS.lock().unwrap_or_else(|p| p.into_inner());
        // A hub has a handful of files; bound the map anyway.
        if footers.len() > 4096 {
            footers.clear();
        }
        footers.insert(path.to_path_buf(), (stamp, footer.clone()));
    }
    Ok(footer)
}

/// The compressed bytes of each of the file's `fields` top-level columns (a nested column's
/// leaves counted under their root), if its Parquet schema has exactly that many.
fn column_bytes(
    metadata: &parquet::file::metadata::ParquetMetaData,
    fields: usize,
) -> Option<std::sync::Arc<[u64]>> {
    let descr = metadata.file_metadata().schema_descr();
    if descr.root_schema().get_fields().len() != fields {
        return None;
    }
    let mut bytes = vec![0u64; fields];
    for row_group in metadata.row_groups() {
        for (leaf, chunk) in row_group.columns().iter().enumerate() {
            let root = descr.get_column_root_idx(leaf);
            let size = u64::try_from(chunk.compressed_size()).unwrap_or(0);
            bytes[root] = bytes[root].saturating_add(size);
        }
    }
    Some(bytes.into())
}

fn type_fits(field_type: FieldType, data_type: &arrow::datatypes::DataType) -> bool {
    use arrow::datatypes::DataType as D;
    match field_type {
        FieldType::String => matches!(data_type, D::Utf8 | D::LargeUtf8 | D::Utf8View),
        FieldType::Integer => data_type.is_integer(),
        FieldType::Number => {
            data_type.is_floating()
                || data_type.is_integer()
                || matches!(data_type, D::Decimal128(..) | D::Decimal256(..))
        }
        FieldType::Date => matches!(data_type, D::Date32 | D::Date64),
        FieldType::Boolean => matches!(data_type, D::Boolean),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema is remembered per file, and read again when the file is replaced.
    #[test]
    fn a_replaced_file_gives_its_new_schema() {
        use arrow::array::{Int32Array, RecordBatch, StringArray};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.parquet");
        let write = |batch: RecordBatch| {
            let tmp = dir.path().join(".d.parquet");
            let mut w = parquet::arrow::ArrowWriter::try_new(
                std::fs::File::create(&tmp).unwrap(),
                batch.schema(),
                None,
            )
            .unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        let ints: Arc<dyn arrow::array::Array> = Arc::new(Int32Array::from(vec![1, 2]));
        write(RecordBatch::try_from_iter([("a", ints)]).unwrap());
        let first = parquet_arrow_schema(&path).unwrap();
        assert_eq!(first.field(0).name(), "a");
        assert!(Arc::ptr_eq(&first, &parquet_arrow_schema(&path).unwrap()));
        let strings: Arc<dyn arrow::array::Array> =
            Arc::new(StringArray::from(vec!["x", "yy", "zzz"]));
        write(RecordBatch::try_from_iter([("b", strings)]).unwrap());
        assert_eq!(parquet_arrow_schema(&path).unwrap().field(0).name(), "b");
    }

    #[test]
    fn dataset_names_are_schema_dot_table() {
        assert!(is_dataset_name("sante.sejours"));
        assert!(!is_dataset_name("sejours"));
        assert!(!is_dataset_name("a.b.c"));
        assert!(!is_dataset_name("Sante.sejours"));
        assert!(!is_dataset_name("sante.se-jours"));
    }

    #[test]
    fn problems_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("datasets.toml"),
            "[[datasets]]\nname = \"a.b\"\ntitle = \"t\"\npath = \"../x.parquet\"\nsecret = \"tax\"\n\
             [[datasets.fields]]\nname = \"c\"\ntitle = \"c\"\ntype = \"string\"\nclass = \"public\"\n\
             [[datasets.fields]]\nname = \"c\"\ntitle = \"c\"\ntype = \"string\"\nclass = \"public\"\n",
        )
        .unwrap();
        let CatalogError::Invalid(problems) = Catalog::load(dir.path()).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|p| p.contains("datasets.toml:2") && p.contains("inside the data folder")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|p| p.contains("datasets.toml:12") && p.contains("declared twice")),
            "{text:?}"
        );
    }

    #[test]
    fn unknown_class_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("datasets.toml"),
            "[[datasets]]\nname = \"a.b\"\ntitle = \"t\"\npath = \"x.parquet\"\nsecret = \"tax\"\n\
             [[datasets.fields]]\nname = \"c\"\ntitle = \"c\"\ntype = \"string\"\nclass = \"secretish\"\n",
        )
        .unwrap();
        let err = Catalog::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("datasets.toml:10"), "{err}");
    }
}
