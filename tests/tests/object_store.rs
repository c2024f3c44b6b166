//! Presigned document uploads and downloads against the real S3 store.

use medflow_infra::object_store::ObjectStore;
use medflow_tests::TestEnv;
use reqwest::StatusCode;

fn put(
    ticket: &medflow_infra::object_store::UploadTicket,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .put(&ticket.url)
        .header("content-type", content_type)
        .body(body)
}

#[tokio::test]
async fn upload_is_bound_to_declared_type_and_size() {
    let env = TestEnv::new().await;
    let store = ObjectStore::new(&env.object_store_settings()).unwrap();
    let key =
        ObjectStore::new_object_key(&format!("test/{}", env.topic_prefix.trim_end_matches('.')));
    let ticket = store
        .presign_upload(&key, "application/pdf", 1024)
        .await
        .unwrap();
    assert_eq!(ticket.headers["content-length"], "1024");

    // Another size or another type than the signed ones is rejected by the store.
    let too_big = put(&ticket, "application/pdf", vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), StatusCode::FORBIDDEN);
    let wrong_type = put(&ticket, "image/png", vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        store.stat(&key).await.unwrap(),
        None,
        "a rejected upload stored something"
    );

    let accepted = put(&ticket, "application/pdf", vec![b'%'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::OK);
    let info = store.stat(&key).await.unwrap().expect("object stored");
    assert_eq!(info.size, 1024);
    assert_eq!(info.content_type.as_deref(), Some("application/pdf"));

    let (download, _) = store.presign_download(&key).await.unwrap();
    let body = reqwest::get(&download)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), 1024);
}

#[tokio::test]
async fn object_keys_are_unguessable() {
    let first = ObjectStore::new_object_key("licenses/doctor-1");
    let second = ObjectStore::new_object_key("licenses/doctor-1/");
    assert_ne!(first, second);
    let random = first.rsplit('/').next().unwrap();
    assert_eq!(random.len(), 32);
    assert!(random.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(second.starts_with("licenses/doctor-1/"), "{second}");
    assert!(!second.contains("//"), "{second}");
}
