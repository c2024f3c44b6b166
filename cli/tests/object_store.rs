//! Checks SigV4 presigned URLs, made with rust-s3, against the stack's S3 store (s3s-fs):
//! a signed upload with a content type, a signed download, and the rejection of altered
//! or expired URLs.
//!
//! Needs a running stack (`cargo run -p medflow-cli -- stack up`), whose credentials it
//! reads from `.stack/s3/credentials.env`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use s3::creds::Credentials;
use s3::{Bucket, Region};

const BUCKET: &str = "medflow-documents";
const CONTENT_TYPE_PDF: &str = "application/pdf";

fn stack_dir() -> PathBuf {
    match std::env::var_os("MEDFLOW_STACK_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(".stack"),
    }
}

fn read_credentials() -> BTreeMap<String, String> {
    let path = stack_dir().join("s3").join("credentials.env");
    let contents = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "failed to read {} ({error}); run `cargo run -p medflow-cli -- stack up`",
            path.display()
        )
    });
    contents
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

fn endpoint() -> String {
    let port = std::env::var("MEDFLOW_S3_PORT").unwrap_or_else(|_| "9000".to_owned());
    format!("http://127.0.0.1:{port}")
}

fn bucket() -> Box<Bucket> {
    let credentials = read_credentials();
    let credentials = Credentials::new(
        Some(&credentials["MEDFLOW_S3_ACCESS_KEY"]),
        Some(&credentials["MEDFLOW_S3_SECRET_KEY"]),
        None,
        None,
        None,
    )
    .expect("credentials");
    let region = Region::Custom {
        region: "us-east-1".to_owned(),
        endpoint: endpoint(),
    };
    Bucket::new(BUCKET, region, credentials)
        .expect("bucket")
        .with_path_style()
}

/// HTTP client that ignores proxy settings, so requests to 127.0.0.1 stay local.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

fn unique_key() -> String {
    format!("tests/{}/license.pdf", uuid::Uuid::new_v4())
}

async fn presign_put(bucket: &Bucket, key: &str, content_type: &str, expiry_secs: u32) -> String {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("header value"),
    );
    bucket
        .presign_put(key, expiry_secs, Some(headers), None)
        .await
        .expect("presigned PUT")
}

async fn put(url: &str, content_type: &str, body: &[u8]) -> reqwest::Response {
    http()
        .put(url)
        .header(CONTENT_TYPE, content_type)
        .body(body.to_vec())
        .send()
        .await
        .expect("PUT request")
}

/// Replaces the last character of the `X-Amz-Signature` value with a different hex digit.
fn tamper_signature(url: &str) -> String {
    let start =
        url.find("X-Amz-Signature=").expect("signature parameter") + "X-Amz-Signature=".len();
    let end = url[start..]
        .find('&')
        .map_or(url.len(), |offset| start + offset);
    let mut signature = url[start..end].to_owned();
    let last = signature.pop().expect("non-empty signature");
    signature.push(if last == '0' { '1' } else { '0' });
    format!("{}{}{}", &url[..start], signature, &url[end..])
}

#[tokio::test]
async fn presigned_put_then_get_roundtrips() {
    let bucket = bucket();
    let key = unique_key();
    let body = b"%PDF-1.7 test document".to_vec();

    let put_url = presign_put(&bucket, &key, CONTENT_TYPE_PDF, 300).await;
    let upload = put(&put_url, CONTENT_TYPE_PDF, &body).await;
    assert_eq!(
        upload.status(),
        StatusCode::OK,
        "upload: {}",
        upload.text().await.unwrap_or_default()
    );

    let get_url = bucket
        .presign_get(&key, 300, None)
        .await
        .expect("presigned GET");
    let download = http().get(&get_url).send().await.expect("GET request");
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download
            .headers()
            .get(CONTENT_TYPE)
            .map(HeaderValue::as_bytes),
        Some(CONTENT_TYPE_PDF.as_bytes())
    );
    assert_eq!(
        download.bytes().await.expect("body").as_ref(),
        body.as_slice()
    );
}

#[tokio::test]
async fn presigned_put_rejects_other_content_type() {
    let bucket = bucket();
    let key = unique_key();
    let put_url = presign_put(&bucket, &key, CONTENT_TYPE_PDF, 300).await;

    let upload = put(&put_url, "text/html", b"<script></script>").await;
    assert_eq!(upload.status(), StatusCode::FORBIDDEN);

    let get_url = bucket
        .presign_get(&key, 300, None)
        .await
        .expect("presigned GET");
    let download = http().get(&get_url).send().await.expect("GET request");
    assert_eq!(
        download.status(),
        StatusCode::NOT_FOUND,
        "the rejected upload must not be stored"
    );
}

#[tokio::test]
async fn tampered_signature_is_rejected() {
    let bucket = bucket();
    let key = unique_key();
    let body = b"original".to_vec();
    let put_url = presign_put(&bucket, &key, CONTENT_TYPE_PDF, 300).await;

    let tampered_upload = put(&tamper_signature(&put_url), CONTENT_TYPE_PDF, &body).await;
    assert_eq!(tampered_upload.status(), StatusCode::FORBIDDEN);

    let upload = put(&put_url, CONTENT_TYPE_PDF, &body).await;
    assert_eq!(upload.status(), StatusCode::OK);
    let get_url = bucket
        .presign_get(&key, 300, None)
        .await
        .expect("presigned GET");
    let tampered_download = http()
        .get(tamper_signature(&get_url))
        .send()
        .await
        .expect("GET request");
    assert_eq!(tampered_download.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn expired_presigned_get_is_rejected() {
    let bucket = bucket();
    let key = unique_key();
    let put_url = presign_put(&bucket, &key, CONTENT_TYPE_PDF, 300).await;
    assert_eq!(
        put(&put_url, CONTENT_TYPE_PDF, b"expiring").await.status(),
        StatusCode::OK
    );

    let get_url = bucket
        .presign_get(&key, 1, None)
        .await
        .expect("presigned GET");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let download = http().get(&get_url).send().await.expect("GET request");
    assert_eq!(download.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unsigned_request_is_rejected() {
    let url = format!("{}/{BUCKET}/{}", endpoint(), unique_key());

    let upload = put(&url, CONTENT_TYPE_PDF, b"anonymous").await;

    assert_eq!(upload.status(), StatusCode::FORBIDDEN);
}
