//! The extracts folder: which extract a key names ([`ExtractKey`]), where it lives (its file
//! name), and the removal of extracts of older key versions. (Folder and files are made
//! private, 0700 and 0600, by `private_fs`.)
//!
//! Owns: the name `<file stem>.<domain>.v<version>.<hash>.parquet`.
//!
//! Must never: create the folder or a file readable by anyone but the hub's user (extracts
//! hold every other column raw), or put anything but letters, digits, `-` and `_` of the data
//! file's stem and the domain in a name.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Which extract: data file, domain, key version, pseudonymised columns (sorted).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ExtractKey {
    pub(super) source: PathBuf,
    pub(super) domain: String,
    pub(super) version: u32,
    pub(super) columns: Vec<String>,
}

/// `<file stem>.<domain>.v<version>.<hash>.parquet` in `dir`; the hash covers the data file's
/// path, the domain, the version and the columns.
pub(super) fn path_of(dir: &Path, key: &ExtractKey) -> PathBuf {
    let mut hash = Sha256::new();
    hash.update(key.source.to_string_lossy().as_bytes());
    hash.update([0]);
    hash.update(key.domain.as_bytes());
    hash.update([0]);
    hash.update(key.version.to_be_bytes());
    for c in &key.columns {
        hash.update([0]);
        hash.update(c.as_bytes());
    }
    let hash = hex::encode(&hash.finalize()[..8]);
    dir.join(format!(
        "{}.v{}.{hash}.parquet",
        prefix(&key.source, &key.domain),
        key.version
    ))
}

/// Removes from `dir` the extracts of the same data file and domain made with older key
/// versions (their pseudonyms are no longer served).
pub(super) fn remove_older_versions(dir: &Path, key: &ExtractKey) {
    let prefix = format!("{}.v", prefix(&key.source, &key.domain));
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for file in listing.flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        let version = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('.').next())
            .and_then(|v| v.parse::<u32>().ok());
        if version.is_some_and(|v| v < key.version) {
            let _ = std::fs::remove_file(file.path());
        }
    }
}

/// Removes from `dir` the extracts of other versions of `key`'s object whose local copy is
/// gone, when `key`'s source is the local copy of an object on the bucket
/// (`<key hash>-<ETag hash>.parquet`, named by `storage`, which keeps an object's current and
/// previous copies only): no query can read them again.
pub(super) fn remove_extracts_of_removed_copies(dir: &Path, key: &ExtractKey) {
    let Some(stem) = key.source.file_stem().and_then(|s| s.to_str()) else {
        return;
    };
    let is_hash = |s: &str| s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let Some((object, version)) = stem.split_once('-') else {
        return;
    };
    if !is_hash(object) || !is_hash(version) {
        return;
    }
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    for file in listing.flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        let Some(copy) = name.split('.').next() else {
            continue;
        };
        let of_this_object = copy
            .split_once('-')
            .is_some_and(|(o, v)| o == object && is_hash(v));
        if of_this_object
            && !key
                .source
                .with_file_name(format!("{copy}.parquet"))
                .exists()
        {
            let _ = std::fs::remove_file(file.path());
        }
    }
}

/// File-name prefix of an extract: the data file's stem and the domain, letters, digits,
/// `-` and `_` only.
fn prefix(source: &Path, domain: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let stem = source
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{}.{}", clean(&stem), clean(domain))
}

#[cfg(all(test, unix))]
mod tests {
    use std::path::Path;

    use super::super::Extracts;
    use super::super::testing::{built, domain, write_source};

    /// On a bucket, an extract's source is the local copy of one object version
    /// (`<key hash>-<ETag hash>.parquet`): the extracts of versions whose copy is gone go at
    /// the next build of that object's extracts; other objects' and data files' stay.
    #[test]
    fn extracts_of_removed_copies_go_and_no_other() {
        use super::{ExtractKey, remove_extracts_of_removed_copies};
        let dir = tempfile::tempdir().unwrap();
        let (copies, folder) = (dir.path().join(".objects"), dir.path().join("extracts"));
        std::fs::create_dir_all(&copies).unwrap();
        std::fs::create_dir_all(&folder).unwrap();
        let (object, other) = ("0123456789abcdef", "fedcba9876543210");
        let (v1, v2) = ("1111111111111111", "2222222222222222");
        for name in [
            format!("{object}-{v1}.projet.v1.aa.parquet"),
            format!("{object}-{v2}.projet.v1.bb.parquet"),
            format!("{other}-{v1}.projet.v1.cc.parquet"),
            "sejours.projet.v1.dd.parquet".to_string(),
        ] {
            std::fs::write(folder.join(name), b"x").unwrap();
        }
        let current = copies.join(format!("{object}-{v2}.parquet"));
        std::fs::write(&current, b"x").unwrap();
        remove_extracts_of_removed_copies(
            &folder,
            &ExtractKey {
                source: current,
                domain: "projet".into(),
                version: 1,
                columns: vec!["nir".into()],
            },
        );
        let mut left: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                format!("{object}-{v2}.projet.v1.bb.parquet"),
                format!("{other}-{v1}.projet.v1.cc.parquet"),
                "sejours.projet.v1.dd.parquet".to_string(),
            ]
        );
    }

    #[test]
    fn extracts_are_private_and_leave_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("sejours.parquet");
        write_source(&source, &[Some("1840375056123")]);
        let folder = dir.path().join("extracts");
        let extract = built(&Extracts::new(folder.clone()), &source, &domain(1, 1));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&extract.path), 0o600);
        assert_eq!(mode(&folder), 0o700);
        let names: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(
            names[0].starts_with("sejours.projet-diabete.v1."),
            "{names:?}"
        );
    }
}
