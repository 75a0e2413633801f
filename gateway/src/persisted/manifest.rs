//! Apollo's persisted-operation manifest (`apollo-persisted-query-manifest`, version 1):
//! the operations a client build ships with, by id. [`ManifestSource`] holds the current
//! one and reloads the file when it changes or on SIGHUP; a file that fails to load keeps
//! the previous manifest in service.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The `format` every manifest declares.
pub const MANIFEST_FORMAT: &str = "apollo-persisted-query-manifest";

/// The file as written by Apollo's tooling and by `gantry manifest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub format: String,
    pub version: u32,
    pub operations: Vec<ManifestOperation>,
}

/// One operation: `id` is what clients send (`documentId`, `doc_id` or the APQ hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOperation {
    pub id: String,
    pub body: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading the manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the manifest is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the manifest format is {0:?}, expected \"apollo-persisted-query-manifest\"")]
    Format(String),
    #[error("the manifest version is {0}, expected 1")]
    Version(u32),
    #[error("the manifest has two different operations with the id {0:?}")]
    DuplicateId(String),
}

/// A loaded manifest, indexed for lookups.
#[derive(Debug, Default)]
pub struct Manifest {
    by_id: HashMap<String, Arc<ManifestOperation>>,
    bodies: HashSet<String>,
}

impl Manifest {
    pub fn parse(json: &str) -> Result<Self, ManifestError> {
        let file: ManifestFile = serde_json::from_str(json)?;
        if file.format != MANIFEST_FORMAT {
            return Err(ManifestError::Format(file.format));
        }
        if file.version != 1 {
            return Err(ManifestError::Version(file.version));
        }
        let mut manifest = Self::default();
        for operation in file.operations {
            if let Some(existing) = manifest.by_id.get(&operation.id) {
                if existing.body != operation.body {
                    return Err(ManifestError::DuplicateId(operation.id));
                }
                continue;
            }
            manifest.bodies.insert(operation.body.clone());
            manifest
                .by_id
                .insert(operation.id.clone(), Arc::new(operation));
        }
        Ok(manifest)
    }

    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let json = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&json)
    }

    /// The operation with this id; `sha256:<hex>` ids (Relay, GraphQL-over-HTTP drafts) match
    /// a bare `<hex>` id too.
    pub fn operation(&self, id: &str) -> Option<&Arc<ManifestOperation>> {
        self.by_id.get(id).or_else(|| {
            id.strip_prefix("sha256:")
                .and_then(|hash| self.by_id.get(hash))
        })
    }

    /// Whether free-form text is exactly the body of a listed operation (then a safelist
    /// lets it run).
    pub fn contains_body(&self, body: &str) -> bool {
        self.bodies.contains(body)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The manifest in service, and the file it comes from.
#[derive(Debug)]
pub struct ManifestSource {
    path: PathBuf,
    current: RwLock<Arc<Manifest>>,
    stamp: RwLock<Option<(SystemTime, u64)>>,
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

impl ManifestSource {
    /// Loads the file now; a bad file here is a startup error.
    pub fn open(path: &Path) -> Result<Self, ManifestError> {
        let stamp = file_stamp(path);
        let manifest = Manifest::load(path)?;
        tracing::info!(path = %path.display(), operations = manifest.len(), "persisted-operation manifest loaded");
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(manifest)),
            stamp: RwLock::new(stamp),
        })
    }

    pub fn current(&self) -> Arc<Manifest> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Loads the file again; on failure the previous manifest stays and the reason is
    /// logged.
    pub fn reload(&self, reason: &str) {
        *self.stamp.write().unwrap_or_else(PoisonError::into_inner) = file_stamp(&self.path);
        match Manifest::load(&self.path) {
            Ok(manifest) => {
                tracing::info!(reason, path = %self.path.display(), operations = manifest.len(), "persisted-operation manifest reloaded");
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(manifest);
            }
            Err(error) => {
                tracing::error!(reason, path = %self.path.display(), %error, "the manifest did not load; keeping the previous one");
            }
        }
    }

    /// Whether the file's modification time or size differs from the last load.
    fn changed(&self) -> bool {
        let stamp = file_stamp(&self.path);
        stamp.is_some() && stamp != *self.stamp.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reloads on SIGHUP and when the file changes (polled every `every`), until the source
    /// is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let source: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let hangup_signal = async {
                    #[cfg(unix)]
                    if let Some(signal) = hangup.as_mut() {
                        signal.recv().await;
                        return;
                    }
                    std::future::pending::<()>().await;
                };
                let reason = tokio::select! {
                    () = hangup_signal => "SIGHUP",
                    () = tokio::time::sleep(every) => "poll",
                };
                let Some(source) = source.upgrade() else {
                    return;
                };
                if reason == "SIGHUP" {
                    source.reload(reason);
                } else if source.changed() {
                    source.reload("file changed");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_json(id: &str, body: &str) -> String {
        serde_json::json!({
            "format": MANIFEST_FORMAT,
            "version": 1,
            "operations": [{ "id": id, "body": body, "name": "Hello", "type": "query" }]
        })
        .to_string()
    }

    #[test]
    fn operations_are_found_by_id_with_or_without_the_sha256_prefix() {
        let manifest = Manifest::parse(&manifest_json("abc", "query Hello { hello }")).unwrap();
        assert_eq!(manifest.operation("abc").unwrap().name, "Hello");
        assert_eq!(manifest.operation("sha256:abc").unwrap().name, "Hello");
        assert!(manifest.operation("abd").is_none());
        assert!(manifest.contains_body("query Hello { hello }"));
    }

    #[test]
    fn a_manifest_of_another_format_or_version_is_rejected() {
        let wrong_format = manifest_json("a", "{ a }").replace(MANIFEST_FORMAT, "other");
        assert!(matches!(
            Manifest::parse(&wrong_format),
            Err(ManifestError::Format(_))
        ));
        let wrong_version = manifest_json("a", "{ a }").replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            Manifest::parse(&wrong_version),
            Err(ManifestError::Version(2))
        ));
        assert!(matches!(Manifest::parse("{"), Err(ManifestError::Json(_))));
    }

    #[test]
    fn one_id_with_two_bodies_is_rejected() {
        let json = serde_json::json!({
            "format": MANIFEST_FORMAT, "version": 1,
            "operations": [
                { "id": "a", "body": "{ a }", "name": "A", "type": "query" },
                { "id": "a", "body": "{ b }", "name": "B", "type": "query" },
            ]
        });
        assert!(matches!(
            Manifest::parse(&json.to_string()),
            Err(ManifestError::DuplicateId(_))
        ));
    }

    #[test]
    fn a_bad_file_on_reload_keeps_the_previous_manifest() {
        let dir = std::env::temp_dir().join(format!("gantry-manifest-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("manifest.json");
        std::fs::write(&path, manifest_json("one", "{ one }")).unwrap();
        let source = ManifestSource::open(&path).unwrap();
        std::fs::write(&path, "not json").unwrap();
        source.reload("test");
        assert!(source.current().operation("one").is_some());
        std::fs::write(&path, manifest_json("two", "{ two }")).unwrap();
        source.reload("test");
        assert!(source.current().operation("two").is_some());
        assert!(source.current().operation("one").is_none());
        std::fs::remove_dir_all(&dir).ok();
    }
}
