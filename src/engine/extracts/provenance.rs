//! What an extract records of its origin, in its Parquet key-value metadata: the data file's
//! stamp, a probe pseudonym (which key built it), the pseudonymised columns; and the check of
//! all three before an extract found on disk is used.
//!
//! Owns: the metadata keys and the probe value.
//!
//! Must never: accept an extract with any of the three missing or different (it is built
//! again), or record anything that names a raw value or the key (the probe is no one's
//! identifier, and only its pseudonym is stored).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::Schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;

use super::Extract;
use crate::file_stamp::FileStamp;
use crate::pseudonym::PseudonymDomain;

/// The value whose pseudonym proves which key built an extract (it is no one's identifier).
const PROBE: &str = "passerelle/extract-probe";
/// Key-value metadata of an extract.
const META_SOURCE: &str = "passerelle.extract.source";
const META_PROBE: &str = "passerelle.extract.probe";
const META_COLUMNS: &str = "passerelle.extract.columns";

/// The key-value metadata written into the extract of the data file as of `stamp`, with
/// `columns` pseudonymised in `domain`.
pub(super) fn metadata(
    stamp: FileStamp,
    domain: &PseudonymDomain,
    columns: &[String],
) -> Vec<KeyValue> {
    vec![
        KeyValue::new(META_SOURCE.to_string(), stamp.token()),
        KeyValue::new(META_PROBE.to_string(), domain.pseudonymise(PROBE)),
        KeyValue::new(META_COLUMNS.to_string(), columns.join(",")),
    ]
}

/// The extract at `path` if it exists and was built from the data file as it is now
/// (`stamp`), with `domain`'s key (probe) and exactly `columns`.
pub(super) fn open_valid(
    path: &Path,
    stamp: FileStamp,
    domain: &PseudonymDomain,
    columns: &[String],
) -> Option<Extract> {
    let file = File::open(path).ok()?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    let metadata = builder.metadata().file_metadata().key_value_metadata()?;
    let get = |key: &str| {
        metadata
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    };
    // SECURITY: all three must match; anything missing or different means "build again".
    if get(META_SOURCE)? != stamp.token()
        || get(META_PROBE)? != domain.pseudonymise(PROBE)
        || get(META_COLUMNS)? != columns.join(",")
    {
        return None;
    }
    Some(Extract {
        path: path.to_path_buf(),
        schema: Arc::new(Schema::new(builder.schema().fields().clone())),
    })
}

#[cfg(test)]
mod tests {
    use super::super::Extracts;
    use super::super::testing::{built, domain, nirs, read, write_source};

    #[test]
    fn an_extract_of_another_key_or_version_is_never_used() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("sejours.parquet");
        write_source(&source, &[Some("1840375056123")]);
        let folder = dir.path().join("extracts");
        let v1 = built(&Extracts::new(folder.clone()), &source, &domain(1, 1));
        // A restart with another master key finds the file and refuses it (probe).
        let other_key = domain(2, 1);
        let restarted = Extracts::new(folder.clone());
        assert!(
            restarted
                .find(&source, &other_key, &["nir".to_string()])
                .is_none()
        );
        let rebuilt = built(&restarted, &source, &other_key);
        assert_eq!(rebuilt.path, v1.path, "same name, rebuilt in place");
        assert_eq!(
            nirs(&read(&rebuilt)),
            vec![Some(other_key.pseudonymise("1840375056123"))]
        );
        // A restart with the same key and a new version: a new extract, the old one removed.
        let v2 = domain(2, 2);
        let restarted = Extracts::new(folder.clone());
        let extract = built(&restarted, &source, &v2);
        assert_ne!(extract.path, v1.path);
        assert!(!v1.path.exists(), "extracts of older versions are removed");
        assert_eq!(
            nirs(&read(&extract)),
            vec![Some(v2.pseudonymise("1840375056123"))]
        );
        // Another column set is another extract.
        assert!(
            restarted
                .find(&source, &v2, &["region".to_string()])
                .is_none()
        );
    }
}
