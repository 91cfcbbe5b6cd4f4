//! A read-only view of the bucket for one query (or one check): only the objects it was
//! planned on, each read with `If-Match: <ETag>`, so that a query finishes on the versions it
//! started with or fails with a precondition error (`data_changed`, retryable); never a mix.
//!
//! Must never: write, list, or read an object it holds no version of.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DurationRound, TimeDelta};
use futures::stream::BoxStream;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use super::ObjectData;

pub(super) struct PinnedStore {
    inner: Arc<dyn ObjectStore>,
    /// Each readable object's key and the version it must still be (its ETag is set).
    pins: HashMap<ObjectPath, ObjectMeta>,
    /// Told when an object turns out replaced (its known version is dropped).
    data: Option<Arc<ObjectData>>,
}

impl PinnedStore {
    /// A view reading `pins`' objects at their versions (each meta with its ETag).
    pub(super) fn new(inner: Arc<dyn ObjectStore>, pins: HashMap<ObjectPath, ObjectMeta>) -> Self {
        Self {
            inner,
            pins,
            data: None,
        }
    }

    pub(super) fn forgetting(mut self, data: Arc<ObjectData>) -> Self {
        self.data = Some(data);
        self
    }
}

impl std::fmt::Debug for PinnedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SECURITY: the inner store's configuration holds the key id: never printed.
        write!(f, "PinnedStore({} objects)", self.pins.len())
    }
}

impl std::fmt::Display for PinnedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PinnedStore({} objects)", self.pins.len())
    }
}

fn refused(what: &str) -> object_store::Error {
    object_store::Error::NotSupported {
        source: format!("the hub's view of its bucket does not {what}").into(),
    }
}

/// Whether `e` (as DataFusion or the Parquet reader wrap it) says that an object was replaced
/// since its version was pinned.
pub fn is_version_changed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        // (DataFusion's and Parquet's errors give their inner error as their source.)
        if let Some(object_store::Error::Precondition { .. }) = e.downcast_ref() {
            return true;
        }
        next = e.source();
    }
    false
}

/// DataFusion's caches of footers and statistics check an entry against the object's size
/// and modification time only; S3 gives that time in whole seconds, so an object replaced by
/// one of the same size within a second would keep its stale entry. The ETag is folded into
/// the sub-second part: another version, another time.
fn stamped(mut meta: ObjectMeta) -> ObjectMeta {
    use std::hash::{Hash, Hasher};
    if let Some(etag) = &meta.e_tag {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        etag.hash(&mut hasher);
        let nanos = (hasher.finish() % 1_000_000_000) as i64;
        let second = meta
            .last_modified
            .duration_trunc(TimeDelta::seconds(1))
            .unwrap_or(meta.last_modified);
        meta.last_modified = second + TimeDelta::nanoseconds(nanos);
    }
    meta
}

#[async_trait]
impl ObjectStore for PinnedStore {
    async fn put_opts(&self, _: &ObjectPath, _: PutPayload, _: PutOptions) -> Result<PutResult> {
        Err(refused("write"))
    }

    async fn put_multipart_opts(
        &self,
        _: &ObjectPath,
        _: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(refused("write"))
    }

    async fn get_opts(&self, location: &ObjectPath, mut options: GetOptions) -> Result<GetResult> {
        // SECURITY: only the objects the query was planned on, each at its pinned version.
        let Some((pinned, etag)) = self
            .pins
            .get(location)
            .and_then(|meta| Some((meta, meta.e_tag.as_ref()?)))
        else {
            return Err(object_store::Error::NotFound {
                path: location.to_string(),
                source: "not an object of this query".into(),
            });
        };
        // A plain HEAD (DataFusion asks one per scan) is the pinned version itself, checked a
        // moment ago: no request; every read of bytes still carries If-Match.
        if options.head
            && options.range.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
        {
            return Ok(GetResult {
                payload: GetResultPayload::Stream(Box::pin(futures::stream::empty())),
                meta: stamped(pinned.clone()),
                range: 0..pinned.size,
                attributes: Attributes::default(),
            });
        }
        options.if_match = Some(etag.clone());
        match self.inner.get_opts(location, options).await {
            Ok(mut result) => {
                // SECURITY: the store checked If-Match; an answer of another version (a store
                // that ignores the header) is refused all the same.
                if result.meta.e_tag.as_deref() != Some(etag.as_str()) {
                    self.forget(location);
                    return Err(object_store::Error::Precondition {
                        path: location.to_string(),
                        source: "the object's ETag changed".into(),
                    });
                }
                result.meta = stamped(result.meta);
                Ok(result)
            }
            // A pinned object removed meanwhile is a version change too (retryable), not a
            // missing file (nor a reason for DataFusion to list the prefix).
            Err(object_store::Error::NotFound { path, .. }) => {
                self.forget(location);
                Err(object_store::Error::Precondition {
                    path,
                    source: "the object was removed".into(),
                })
            }
            Err(e) => {
                if matches!(e, object_store::Error::Precondition { .. }) {
                    self.forget(location);
                }
                Err(e)
            }
        }
    }

    fn delete_stream(
        &self,
        _: BoxStream<'static, Result<ObjectPath>>,
    ) -> BoxStream<'static, Result<ObjectPath>> {
        Box::pin(futures::stream::once(async { Err(refused("delete")) }))
    }

    fn list(&self, _: Option<&ObjectPath>) -> BoxStream<'static, Result<ObjectMeta>> {
        Box::pin(futures::stream::once(async { Err(refused("list")) }))
    }

    async fn list_with_delimiter(&self, _: Option<&ObjectPath>) -> Result<ListResult> {
        Err(refused("list"))
    }

    async fn copy_opts(&self, _: &ObjectPath, _: &ObjectPath, _: CopyOptions) -> Result<()> {
        Err(refused("copy"))
    }
}

impl PinnedStore {
    fn forget(&self, location: &ObjectPath) {
        if let Some(data) = &self.data {
            data.forget(location);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    /// Reads carry the pinned ETag: a replaced object fails the read; objects the query was
    /// not planned on, writes and listings are refused.
    #[tokio::test]
    async fn reads_only_the_pinned_versions() {
        let memory = Arc::new(InMemory::new());
        let key = ObjectPath::from("a.parquet");
        memory.put(&key, "version one".into()).await.unwrap();
        let first = memory.head(&key).await.unwrap();
        let pinned = PinnedStore::new(memory.clone(), HashMap::from([(key.clone(), first)]));
        let bytes = pinned.get_range(&key, 0..7).await.unwrap();
        assert_eq!(&bytes[..], b"version");
        assert!(pinned.head(&key).await.is_ok());
        memory.put(&key, "version two".into()).await.unwrap();
        let e = pinned.get_range(&key, 8..11).await.unwrap_err();
        assert!(is_version_changed(&e), "{e}");
        memory.delete(&key).await.unwrap();
        let e = pinned.get_range(&key, 0..1).await.unwrap_err();
        assert!(is_version_changed(&e), "a removed object: {e}");
        let other = ObjectPath::from("b.parquet");
        memory.put(&other, "b".into()).await.unwrap();
        assert!(matches!(
            pinned.get(&other).await,
            Err(object_store::Error::NotFound { .. })
        ));
        assert!(pinned.put(&key, "x".into()).await.is_err());
        assert!(pinned.list_with_delimiter(None).await.is_err());
    }

    /// Another ETag, another modification time for DataFusion's caches.
    #[test]
    fn another_version_has_another_time() {
        let meta = |etag: &str| ObjectMeta {
            location: ObjectPath::from("a"),
            last_modified: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            size: 10,
            e_tag: Some(etag.into()),
            version: None,
        };
        assert_ne!(
            stamped(meta("\"a\"")).last_modified,
            stamped(meta("\"b\"")).last_modified
        );
        assert_eq!(
            stamped(meta("\"a\"")).last_modified,
            stamped(meta("\"a\"")).last_modified
        );
    }
}
