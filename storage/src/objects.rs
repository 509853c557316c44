//! Where book files and covers live: Dogear's object store (a local folder by default, S3 or
//! an S3-compatible server by URL), plus files Dogear only reads in place (Calibre libraries).
//! Keys are content-addressed (`files/<xxh3>.<ext>`), so storing the same bytes twice is
//! harmless and a moved source file needs no copy.

use crate::records::FileLocation;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("object not found")]
    NotFound,
    #[error("range not satisfiable")]
    BadRange,
    #[error("object store: {0}")]
    Store(String),
    #[error("bad object store url {0:?}: {1}")]
    Config(String, String),
}

impl From<object_store::Error> for ObjectError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => ObjectError::NotFound,
            other => ObjectError::Store(other.to_string()),
        }
    }
}

impl From<std::io::Error> for ObjectError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::NotFound {
            ObjectError::NotFound
        } else {
            ObjectError::Store(e.to_string())
        }
    }
}

/// Bytes being read: the whole object's size and the requested part as a stream.
pub struct ObjectRead {
    pub total: u64,
    pub range: Range<u64>,
    pub body: BoxStream<'static, Result<Bytes, ObjectError>>,
}

/// Files at most this big are read whole and put in one request; larger ones are streamed
/// in parts.
const SINGLE_PUT_MAX: u64 = 8 << 20;
const PART_SIZE: usize = 8 << 20;

#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    s3: Option<Arc<AmazonS3>>,
    /// The key prefix inside the bucket (S3), for presigning.
    prefix: String,
    /// The folder of a local store, for copying files in with the kernel's copy.
    root: Option<PathBuf>,
    /// Answer downloads of S3 objects with a presigned URL valid this long.
    presign: Option<Duration>,
    description: String,
}

impl Objects {
    /// A local folder (created if missing).
    pub fn local(root: &Path) -> Result<Objects, ObjectError> {
        std::fs::create_dir_all(root)?;
        let fs = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| ObjectError::Config(root.display().to_string(), e.to_string()))?;
        Ok(Objects {
            store: Arc::new(fs),
            s3: None,
            prefix: String::new(),
            root: Some(root.to_path_buf()),
            presign: None,
            description: "local".into(),
        })
    }

    /// `s3://bucket[/prefix]` with credentials and endpoint from the usual `AWS_*`
    /// environment variables (`AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true` for an
    /// S3-compatible server); anything else is a local folder path.
    pub fn from_url(url: &str, presign: Option<Duration>) -> Result<Objects, ObjectError> {
        let Some(rest) = url.strip_prefix("s3://") else {
            let path = url.strip_prefix("file://").unwrap_or(url);
            return Objects::local(&PathBuf::from(path));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(ObjectError::Config(url.into(), "no bucket".into()));
        }
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| ObjectError::Config(url.into(), e.to_string()))?;
        let s3 = Arc::new(s3);
        let store: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
            s3.clone()
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                s3.clone(),
                prefix.trim_matches('/'),
            ))
        };
        Ok(Objects {
            store,
            s3: Some(s3),
            prefix: prefix.trim_matches('/').to_string(),
            root: None,
            presign,
            description: format!("s3://{bucket}"),
        })
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The file behind `loc` on this machine, if it has one (a local store, or a file
    /// served in place), so it can be opened with random access.
    pub fn local_path(&self, loc: &FileLocation) -> Option<PathBuf> {
        match loc {
            FileLocation::External { path } => Some(PathBuf::from(path)),
            FileLocation::Object { key } => {
                let root = self.root.as_ref()?;
                Some(root.join(ObjectPath::from(key.as_str()).as_ref()))
            }
        }
    }

    /// Copies a local file under `key`, streaming it.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<(), ObjectError> {
        let path = ObjectPath::from(key);
        if let Some(root) = &self.root {
            // Same layout as object_store's local store (one file per key), filled by the
            // kernel's copy instead of a read and a write through this process.
            let dest = root.join(path.as_ref());
            let tmp = dest.with_extension(format!("tmp-{}", uuid::Uuid::now_v7().simple()));
            let src = file.to_path_buf();
            return tokio::task::spawn_blocking(move || -> Result<(), ObjectError> {
                if let Some(dir) = dest.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let copied = std::fs::copy(&src, &tmp).and_then(|_| std::fs::rename(&tmp, &dest));
                if copied.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                Ok(copied?)
            })
            .await
            .map_err(|e| ObjectError::Store(e.to_string()))?;
        }
        let mut f = tokio::fs::File::open(file).await?;
        let len = f.metadata().await?.len();
        if len <= SINGLE_PUT_MAX {
            let mut buf = Vec::with_capacity(len as usize);
            f.read_to_end(&mut buf).await?;
            self.store.put(&path, PutPayload::from(buf)).await?;
            return Ok(());
        }
        let upload = self.store.put_multipart(&path).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            w.wait_for_capacity(4).await?;
            w.write(&buf[..n]);
        }
        w.finish().await?;
        Ok(())
    }

    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<(), ObjectError> {
        self.store
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    pub async fn exists(&self, key: &str) -> Result<bool, ObjectError> {
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a whole object into memory; only for things known to be small (covers).
    pub async fn read_small(&self, loc: &FileLocation, max: u64) -> Result<Bytes, ObjectError> {
        let r = self.read(loc, None).await?;
        if r.total > max {
            return Err(ObjectError::Store(format!(
                "object larger than {max} bytes"
            )));
        }
        let mut out = Vec::with_capacity(r.total as usize);
        let mut body = r.body;
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(Bytes::from(out))
    }

    /// A presigned GET URL for the object, when configured and the store is S3.
    pub async fn presigned(&self, loc: &FileLocation) -> Option<String> {
        let (FileLocation::Object { key }, Some(s3), Some(ttl)) = (loc, &self.s3, self.presign)
        else {
            return None;
        };
        let full = if self.prefix.is_empty() {
            key.clone()
        } else {
            format!("{}/{key}", self.prefix)
        };
        s3.signed_url(
            object_store::signer::Method::GET,
            &ObjectPath::from(full.as_str()),
            ttl,
        )
        .await
        .ok()
        .map(|u| u.to_string())
    }

    /// Size of the bytes at `loc`.
    pub async fn size(&self, loc: &FileLocation) -> Result<u64, ObjectError> {
        match loc {
            FileLocation::Object { key } => {
                Ok(self.store.head(&ObjectPath::from(key.as_str())).await?.size)
            }
            FileLocation::External { path } => Ok(tokio::fs::metadata(path).await?.len()),
        }
    }

    /// Reads `range` (or everything) of the bytes at `loc`.
    pub async fn read(
        &self,
        loc: &FileLocation,
        range: Option<Range<u64>>,
    ) -> Result<ObjectRead, ObjectError> {
        match loc {
            FileLocation::Object { key } => {
                let path = ObjectPath::from(key.as_str());
                let opts = GetOptions {
                    range: range.clone().map(GetRange::Bounded),
                    ..Default::default()
                };
                if range.as_ref().is_some_and(|r| r.start >= r.end) {
                    return Err(ObjectError::BadRange);
                }
                let got = self
                    .store
                    .get_opts(&path, opts)
                    .await
                    .map_err(|e| match e {
                        object_store::Error::NotFound { .. } => ObjectError::NotFound,
                        object_store::Error::NotSupported { .. } => ObjectError::BadRange,
                        other if other.to_string().contains("range") => ObjectError::BadRange,
                        other => other.into(),
                    })?;
                let total = got.meta.size;
                let range = got.range.clone();
                let body = got
                    .into_stream()
                    .map(|c| c.map_err(ObjectError::from))
                    .boxed();
                Ok(ObjectRead { total, range, body })
            }
            FileLocation::External { path } => {
                let mut f = tokio::fs::File::open(path).await?;
                let total = f.metadata().await?.len();
                let range = range.unwrap_or(0..total);
                if range.start >= range.end || range.end > total {
                    return Err(ObjectError::BadRange);
                }
                f.seek(std::io::SeekFrom::Start(range.start)).await?;
                let remaining = range.end - range.start;
                let body =
                    futures_util::stream::unfold((f, remaining), |(mut f, left)| async move {
                        if left == 0 {
                            return None;
                        }
                        let mut buf = vec![0u8; (64 * 1024).min(left as usize)];
                        match f.read(&mut buf).await {
                            Ok(0) => None,
                            Ok(n) => {
                                buf.truncate(n);
                                Some((Ok(Bytes::from(buf)), (f, left - n as u64)))
                            }
                            Err(e) => Some((Err(ObjectError::from(e)), (f, 0))),
                        }
                    })
                    .boxed();
                Ok(ObjectRead { total, range, body })
            }
        }
    }
}
