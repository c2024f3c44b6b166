//! Documents in an S3-compatible store, moved directly between client and store through
//! presigned URLs, so the API never carries file bytes.
//!
//! An upload URL signs the object key, the content type and the exact content length,
//! so the store rejects a request that sends another type or size. After the client
//! reports the upload, [`ObjectStore::stat`] reads what the store actually contains before
//! anything refers to the object.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use rand::RngCore;
use s3::creds::Credentials;
use s3::{Bucket, Region};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone, Args)]
pub struct ObjectStoreSettings {
    /// Base URL of the S3 endpoint.
    #[arg(
        long = "s3-endpoint",
        env = "MEDFLOW_S3_ENDPOINT",
        default_value = "http://127.0.0.1:9000"
    )]
    pub endpoint: String,

    /// Region name used in signatures.
    #[arg(
        long = "s3-region",
        env = "MEDFLOW_S3_REGION",
        default_value = "us-east-1"
    )]
    pub region: String,

    /// Bucket that contains documents.
    #[arg(
        long = "s3-bucket",
        env = "MEDFLOW_S3_BUCKET",
        default_value = "medflow-documents"
    )]
    pub bucket: String,

    #[arg(
        long = "s3-access-key",
        env = "MEDFLOW_S3_ACCESS_KEY",
        hide_env_values = true
    )]
    pub access_key: SecretString,

    #[arg(
        long = "s3-secret-key",
        env = "MEDFLOW_S3_SECRET_KEY",
        hide_env_values = true
    )]
    pub secret_key: SecretString,

    /// Lifetime of presigned URLs, in seconds.
    #[arg(
        long = "s3-presign-expiry-secs",
        env = "MEDFLOW_S3_PRESIGN_EXPIRY_SECS",
        default_value_t = 600
    )]
    pub presign_expiry_secs: u32,
}

/// Everything a client needs to upload one object.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UploadTicket {
    /// Server-chosen object key; the client cannot pick or guess it.
    pub object_key: String,
    pub url: String,
    /// Always `PUT`.
    pub method: &'static str,
    /// Headers the upload must send exactly as given; they are part of the signature.
    pub headers: std::collections::BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

/// Size and type of a stored object, as the store reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub content_type: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ObjectStoreError {
    #[error("object store request failed: {0}")]
    Request(#[from] s3::error::S3Error),
    #[error("object store answered HTTP {0}")]
    Status(u16),
    #[error("invalid object store settings: {0}")]
    Settings(String),
}

#[derive(Clone)]
pub struct ObjectStore {
    bucket: Box<Bucket>,
    expiry: Duration,
}

impl ObjectStore {
    pub fn new(settings: &ObjectStoreSettings) -> Result<Self, ObjectStoreError> {
        let credentials = Credentials::new(
            Some(settings.access_key.expose_secret()),
            Some(settings.secret_key.expose_secret()),
            None,
            None,
            None,
        )
        .map_err(|error| ObjectStoreError::Settings(error.to_string()))?;
        let region = Region::Custom {
            region: settings.region.clone(),
            endpoint: settings.endpoint.trim_end_matches('/').to_owned(),
        };
        let bucket = Bucket::new(&settings.bucket, region, credentials)?.with_path_style();
        Ok(Self {
            bucket,
            expiry: Duration::from_secs(u64::from(settings.presign_expiry_secs)),
        })
    }

    /// Makes an unguessable key under `prefix`: 128 random bits, hex encoded.
    pub fn new_object_key(prefix: &str) -> String {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        format!("{}/{}", prefix.trim_end_matches('/'), hex::encode(bytes))
    }

    /// Presigns a PUT of exactly `size` bytes of `content_type` to `object_key`.
    pub async fn presign_upload(
        &self,
        object_key: &str,
        content_type: &str,
        size: u64,
    ) -> Result<UploadTicket, ObjectStoreError> {
        let mut headers = http::HeaderMap::new();
        let content_type_value = http::HeaderValue::from_str(content_type).map_err(|_| {
            ObjectStoreError::Settings(format!(
                "content type '{content_type}' is not a header value"
            ))
        })?;
        headers.insert(http::header::CONTENT_TYPE, content_type_value);
        headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(size));
        let url = self
            .bucket
            .presign_put(
                object_key,
                self.expiry.as_secs() as u32,
                Some(headers),
                None,
            )
            .await?;
        Ok(UploadTicket {
            object_key: object_key.to_owned(),
            url,
            method: "PUT",
            headers: [
                ("content-type".to_owned(), content_type.to_owned()),
                ("content-length".to_owned(), size.to_string()),
            ]
            .into(),
            expires_at: Utc::now() + self.expiry,
        })
    }

    /// Presigns a GET of `object_key`; returns the URL and its expiry.
    pub async fn presign_download(
        &self,
        object_key: &str,
    ) -> Result<(String, DateTime<Utc>), ObjectStoreError> {
        let url = self
            .bucket
            .presign_get(object_key, self.expiry.as_secs() as u32, None)
            .await?;
        Ok((url, Utc::now() + self.expiry))
    }

    /// Reads the stored object's size and type; `None` if it does not exist.
    pub async fn stat(&self, object_key: &str) -> Result<Option<ObjectInfo>, ObjectStoreError> {
        match self.bucket.head_object(object_key).await {
            Ok((head, 200)) => Ok(Some(ObjectInfo {
                size: head.content_length.unwrap_or(0).max(0) as u64,
                content_type: head.content_type,
            })),
            Ok((_, 404)) => Ok(None),
            Ok((_, status)) => Err(ObjectStoreError::Status(status)),
            Err(s3::error::S3Error::HttpFailWithBody(404, _)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Returns a readiness check that passes when the store responds to a HEAD request
    /// (a missing object counts as a response).
    pub fn readiness_check(&self) -> crate::web::health::Check {
        let store = self.clone();
        std::sync::Arc::new(move || {
            let store = store.clone();
            Box::pin(async move {
                store
                    .stat("readiness-probe")
                    .await
                    .map(drop)
                    .map_err(|error| error.to_string())
            })
        })
    }

    /// Reads up to `length` bytes from the start of an object.
    pub async fn read_prefix(
        &self,
        object_key: &str,
        length: u64,
    ) -> Result<Vec<u8>, ObjectStoreError> {
        let response = self
            .bucket
            .get_object_range(object_key, 0, Some(length.max(1) - 1))
            .await?;
        match response.status_code() {
            200 | 206 => Ok(response.bytes().to_vec()),
            status => Err(ObjectStoreError::Status(status)),
        }
    }

    /// Copies an uploaded object to `attached/<upload key>/<suffix>` and deletes the
    /// upload. A presigned PUT stays valid until it expires and can overwrite its key any
    /// number of times, so anything the platform refers to must live under a key no
    /// upload URL was ever issued for; the suffix (a new document id) keeps a second
    /// attach of the same upload from overwriting the first copy.
    pub async fn move_to_attached(
        &self,
        upload_key: &str,
        suffix: &str,
    ) -> Result<String, ObjectStoreError> {
        let attached = format!("{}{suffix}", attached_prefix(upload_key));
        let status = self
            .bucket
            .copy_object_internal(upload_key, &attached)
            .await?;
        if !(200..300).contains(&status) {
            return Err(ObjectStoreError::Status(status));
        }
        // The copy is what counts; a failed cleanup only leaves an unreferenced object.
        if let Err(error) = self.bucket.delete_object(upload_key).await {
            tracing::warn!(%error, "failed to delete an upload after copying it");
        }
        Ok(attached)
    }
}

/// Key prefix under which copies of `upload_key` are attached.
pub fn attached_prefix(upload_key: &str) -> String {
    format!("attached/{upload_key}/")
}

/// Returns whether `prefix` (the first bytes of a file) starts with the signature of
/// `content_type`. Only the types accepted for documents are known.
pub fn matches_signature(content_type: &str, prefix: &[u8]) -> bool {
    match content_type {
        "application/pdf" => prefix.starts_with(b"%PDF-"),
        "image/png" => prefix.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => prefix.starts_with(&[0xFF, 0xD8, 0xFF]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_their_types_only() {
        assert!(matches_signature("application/pdf", b"%PDF-1.7 ..."));
        assert!(matches_signature("image/png", b"\x89PNG\r\n\x1a\nrest"));
        assert!(matches_signature("image/jpeg", &[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(!matches_signature("image/png", b"%PDF-1.7"));
        assert!(!matches_signature("application/pdf", b"<html>"));
        assert!(!matches_signature("text/plain", b"%PDF-"));
    }
}
