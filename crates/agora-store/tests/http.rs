//! The `/blobs` routes and the verifying client, over real loopback HTTP.

mod common;

use agora_core::Hash;
use agora_store::Store;
use agora_store::encrypt::{BlobKey, CryptoError};
use agora_store::http::client::no_progress;
use agora_store::http::{Client, ClientError, RunningServer, ServerConfig, router};
use agora_store::tree::{bao_tree, proof_ranges};
use axum::extract::{Path, Query};
use axum::routing::{get, put};
use bao_tree::io::outboard::PreOrderMemOutboard;
use bao_tree::io::sync::encode_ranges;
use common::{G, SIZES, bytes, entries, eventually, flip_byte};
use reqwest::StatusCode;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

const LOCALHOST: &str = "127.0.0.1:0";

struct Node {
    dir: tempfile::TempDir,
    store: Store,
    server: RunningServer,
    client: Client,
}

impl Node {
    async fn start(config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let server =
            RunningServer::start(router(store.clone(), config), LOCALHOST.parse().unwrap()).await.unwrap();
        let client = Client::new(&server.url()).unwrap();
        Self { dir, store, server, client }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    async fn stop(self) {
        self.server.shutdown().await.unwrap();
    }
}

async fn error_of(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["error"].as_str().expect("errors are JSON {\"error\": ...}").to_owned())
}

#[tokio::test]
async fn round_trips_at_chunk_group_boundaries() {
    let node = Node::start(ServerConfig::open()).await;
    let http = reqwest::Client::new();
    for (i, len) in SIZES.into_iter().enumerate() {
        let data = bytes(len, i as u8);
        let info = node.client.upload_bytes(data.clone(), false).await.unwrap();
        assert_eq!(info.hash, Hash::of(&data), "len {len}");
        assert_eq!(node.client.stat(&info.hash).await.unwrap(), Some(info));

        let mut out = Vec::new();
        let n = node.client.download(&info.hash, None, &mut out, no_progress).await.unwrap();
        assert!(n == len as u64 && out == data, "len {len}");

        let raw = http.get(node.url(&format!("/blobs/{}", info.hash))).send().await.unwrap();
        assert_eq!(raw.status(), StatusCode::OK);
        assert_eq!(raw.headers()["accept-ranges"], "bytes");
        assert_eq!(raw.headers()["etag"], format!("\"{}\"", info.hash).as_str());
        assert!(raw.bytes().await.unwrap() == data);

        let l = len as u64;
        for range in
            [0..l.min(1), (G as u64 - 1).min(l)..(G as u64 + 1).min(l), l / 3..l, l.saturating_sub(2)..l]
        {
            let mut out = Vec::new();
            node.client.download(&info.hash, Some(range.clone()), &mut out, no_progress).await.unwrap();
            assert!(out == data[range.start as usize..range.end as usize], "len {len} range {range:?}");
        }
    }
    assert_eq!(node.client.list().await.unwrap(), node.store.list().unwrap());
    node.stop().await;
}

#[tokio::test]
async fn raw_range_requests_follow_http_semantics() {
    let node = Node::start(ServerConfig::open()).await;
    let data = bytes(3 * G + 10, 1);
    let info = node.client.upload_bytes(data.clone(), false).await.unwrap();
    let url = node.url(&format!("/blobs/{}", info.hash));
    let http = reqwest::Client::new();
    let ranged = |range: &str| http.get(&url).header("range", range).send();

    let r = ranged(&format!("bytes={}-{}", G - 1, G)).await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-range"], format!("bytes {}-{}/{}", G - 1, G, data.len()).as_str());
    assert_eq!(r.headers()["content-length"], "2");
    assert_eq!(r.bytes().await.unwrap(), &data[G - 1..G + 1]);

    let r = ranged("bytes=-5").await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), &data[data.len() - 5..]);

    let r = ranged(&format!("bytes={}-", data.len())).await.unwrap();
    assert_eq!(r.headers()["content-range"], format!("bytes */{}", data.len()).as_str());
    let (status, message) = error_of(r).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert!(message.contains("beyond the end"), "{message}");

    for bad in ["bytes=5-1", "lines=1-2", "bytes=0-1,4-5"] {
        let (status, message) = error_of(ranged(bad).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(message.to_lowercase().contains("range"), "{message}");
    }
    node.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors() {
    let node = Node::start(ServerConfig { max_upload_bytes: 10_000, ..ServerConfig::open() }).await;
    let http = reqwest::Client::new();
    let missing = Hash::of(b"missing");

    let (status, message) = error_of(http.get(node.url("/blobs/xyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("invalid blob hash \"xyz\"") && message.contains("64 hex"), "{message}");

    for path in [format!("/blobs/{missing}"), format!("/blobs/{missing}/verified")] {
        let (status, message) = error_of(http.get(node.url(&path)).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(message.contains(&missing.to_string()), "{message}");
    }
    let (status, _) =
        error_of(http.post(node.url(&format!("/blobs/{missing}/pin"))).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        http.head(node.url(&format!("/blobs/{missing}"))).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(node.client.stat(&missing).await.unwrap(), None);
    let err = node.client.download(&missing, None, &mut Vec::new(), no_progress).await.unwrap_err();
    assert!(matches!(err, ClientError::Status { status: StatusCode::NOT_FOUND, .. }), "{err}");

    // Oversized uploads: declared up front, or only discovered while streaming.
    let (status, message) =
        error_of(http.put(node.url("/blobs")).body(vec![0u8; 10_001]).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(message.contains("limit of 10000 bytes"), "{message}");
    let chunks = futures_util::stream::iter(
        (0..11).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![1u8; 1000]))),
    );
    let err = node.client.upload_stream(chunks, None, false, no_progress).await.unwrap_err();
    assert!(matches!(err, ClientError::Status { status: StatusCode::PAYLOAD_TOO_LARGE, .. }), "{err}");

    let (status, message) =
        error_of(http.put(node.url("/blobs?pin=maybe")).body("x").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("pin=true|false"), "{message}");

    let info = node.client.upload_bytes(bytes(100, 1), false).await.unwrap();
    let verified = |q: &str| http.get(node.url(&format!("/blobs/{}/verified?{q}", info.hash))).send();
    let (status, _) = error_of(verified("start=101").await.unwrap()).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    let (status, message) = error_of(verified("start=50&end=10").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("start 50 is after end 10"), "{message}");
    let (status, _) = error_of(verified("offset=3").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err =
        node.client.download(&info.hash, Some(200..300), &mut Vec::new(), no_progress).await.unwrap_err();
    assert!(matches!(err, ClientError::Status { status: StatusCode::RANGE_NOT_SATISFIABLE, .. }), "{err}");

    assert!(matches!(Client::new("https://example.com"), Err(ClientError::InvalidUrl { .. })));
    node.stop().await;
}

#[tokio::test]
async fn pins_and_listing_over_http() {
    let node = Node::start(ServerConfig::open()).await;
    let a = node.client.upload_bytes(bytes(10, 1), true).await.unwrap();
    let b = node.client.upload_bytes(bytes(20, 2), false).await.unwrap();
    assert!(a.pinned && !b.pinned);
    assert!(node.client.pin(&b.hash).await.unwrap().pinned);
    assert!(!node.client.unpin(&a.hash).await.unwrap().pinned);
    assert!(node.client.stat(&b.hash).await.unwrap().unwrap().pinned);
    let mut expected = vec![a, b];
    expected[0].pinned = false;
    expected[1].pinned = true;
    expected.sort_by_key(|i| i.hash);
    assert_eq!(node.client.list().await.unwrap(), expected);
    node.stop().await;
}

#[tokio::test]
async fn files_upload_and_download_with_progress() {
    let node = Node::start(ServerConfig::open()).await;
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("weights.bin");
    let data = bytes(3 * 1024 * 1024 + 77, 5);
    std::fs::write(&source, &data).unwrap();

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let info = node
        .client
        .upload_file(&source, true, None, move |done, total| log.lock().unwrap().push((done, total)))
        .await
        .unwrap();
    assert_eq!(info.hash, Hash::of(&data));
    let ups = seen.lock().unwrap().clone();
    assert!(ups.len() > 1 && ups.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(ups.last(), Some(&(data.len() as u64, data.len() as u64)));

    let target = work.path().join("copy.bin");
    let mut downs = Vec::new();
    let n = node.client.download_to_file(&info.hash, &target, None, |d, t| downs.push((d, t))).await.unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(std::fs::read(&target).unwrap(), data);
    assert_eq!(downs.last(), Some(&(data.len() as u64, data.len() as u64)));
    assert!(!work.path().join("copy.bin.part").exists());
    node.stop().await;
}

#[tokio::test]
async fn a_bounded_client_refuses_larger_blobs_before_reading_them() {
    // Before: an auditor or provider downloading a stranger's blob (a provider's outputs, a
    // requester's inputs or model) wrote all of it to disk and only then compared its size.
    let node = Node::start(ServerConfig::open()).await;
    let data = bytes(300 * 1024 + 1, 9);
    let info = node.client.upload_bytes(data.clone(), true).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("blob");
    let bounded = node.client.clone().with_max_blob(300 * 1024);
    let mut seen = 0;
    let err = bounded.download_to_file(&info.hash, &target, None, |d, _| seen = d).await.unwrap_err();
    assert!(
        matches!(err, ClientError::TooLarge { size, limit, .. } if size == data.len() as u64 && limit == 300 * 1024),
        "{err}"
    );
    assert_eq!(seen, 0, "no content was read");
    assert!(!target.exists() && !work.path().join("blob.part").exists());
    let mut out = Vec::new();
    assert!(matches!(
        bounded.download(&info.hash, None, &mut out, no_progress).await,
        Err(ClientError::TooLarge { .. })
    ));
    assert!(out.is_empty());
    // At the limit, it downloads.
    let exact = node.client.clone().with_max_blob(data.len() as u64);
    assert_eq!(
        exact.download_to_file(&info.hash, &target, None, no_progress).await.unwrap(),
        data.len() as u64
    );
    node.stop().await;
}

#[tokio::test]
async fn encrypted_blobs_need_their_key() {
    let node = Node::start(ServerConfig::open()).await;
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("inputs.jsonl");
    let data = bytes(200_000, 3);
    std::fs::write(&source, &data).unwrap();
    let key = BlobKey::generate();

    let info = node.client.upload_file(&source, false, Some(&key), no_progress).await.unwrap();
    let stored = node.store.get(&info.hash).unwrap();
    assert_ne!(info.hash, Hash::of(&data));
    assert!(!stored.windows(64).any(|w| w == &data[1000..1064]), "the node holds only ciphertext");
    assert_eq!(agora_store::encrypt::decrypt(&key, &stored).unwrap(), data);

    let plain = work.path().join("plain");
    node.client.download_to_file(&info.hash, &plain, Some(&key), no_progress).await.unwrap();
    assert_eq!(std::fs::read(&plain).unwrap(), data);

    let wrong = work.path().join("wrong");
    let err = node
        .client
        .download_to_file(&info.hash, &wrong, Some(&BlobKey::generate()), no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Crypto(CryptoError::Tampered { segment: 0 })), "{err}");
    assert!(!wrong.exists() && !work.path().join("wrong.part").exists());

    let raw = work.path().join("raw");
    node.client.download_to_file(&info.hash, &raw, None, no_progress).await.unwrap();
    assert_eq!(std::fs::read(&raw).unwrap(), stored);
    node.stop().await;
}

#[tokio::test]
async fn an_upload_cut_off_mid_body_leaves_nothing_behind() {
    let node = Node::start(ServerConfig::open()).await;
    let mut conn = tokio::net::TcpStream::connect(node.server.addr()).await.unwrap();
    let head = "PUT /blobs HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000000\r\n\r\n";
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&bytes(300_000, 1)).await.unwrap();
    conn.flush().await.unwrap();
    let tmp = node.dir.path().join("tmp");
    assert!(eventually(|| entries(&tmp) == 1).await, "the server is staging the upload");
    drop(conn);

    assert!(eventually(|| entries(&tmp) == 0).await, "the staging file is removed");
    assert!(node.store.list().unwrap().is_empty());
    assert_eq!(entries(&node.dir.path().join("data")), 0);
    node.stop().await;
}

#[tokio::test]
async fn a_blob_corrupted_on_the_nodes_disk_is_not_served() {
    let node = Node::start(ServerConfig::open()).await;
    let data = bytes(40 * G, 7);
    let info = node.client.upload_bytes(data.clone(), false).await.unwrap();
    let path = node.dir.path().join("data").join(info.hash.to_string());
    let http = reqwest::Client::new();
    let raw_url = node.url(&format!("/blobs/{}", info.hash));

    // Corruption near the start is caught before the response begins: a clear 500.
    flip_byte(&path, 5);
    let (status, message) = error_of(http.get(&raw_url).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(message.contains("corrupted on disk"), "{message}");
    let err = node.client.download(&info.hash, None, &mut Vec::new(), no_progress).await.unwrap_err();
    assert!(matches!(err, ClientError::Status { status: StatusCode::INTERNAL_SERVER_ERROR, .. }), "{err}");
    flip_byte(&path, 5);

    // Corruption further in cuts the response off before the bad group leaves the node.
    let bad = 30 * G as u64 + 9;
    flip_byte(&path, bad);
    let raw = http.get(&raw_url).send().await;
    assert!(match raw {
        Err(_) => true, // Cut off before the head was flushed.
        Ok(response) => response.bytes().await.is_err(),
    });
    let mut out = Vec::new();
    let err = node.client.download(&info.hash, None, &mut out, no_progress).await.unwrap_err();
    // The node aborts the response; depending on timing the head was flushed or not.
    assert!(
        matches!(
            err,
            ClientError::Interrupted { .. } | ClientError::Truncated { .. } | ClientError::Http { .. }
        ),
        "{err}"
    );
    assert!(out.len() as u64 <= 30 * G as u64 && out == data[..out.len()]);
    // Parts that verify are still served.
    let mut head = Vec::new();
    node.client.download(&info.hash, Some(0..G as u64), &mut head, no_progress).await.unwrap();
    assert!(head == data[..G]);
    node.stop().await;
}

#[derive(serde::Deserialize)]
struct Span {
    start: Option<u64>,
    end: Option<u64>,
}

/// A node that answers verified requests for bytes `start..end` with `respond(start..end)`, and
/// uploads with a wrong hash.
async fn lying_node(
    respond: impl Fn(Range<u64>) -> Vec<u8> + Clone + Send + Sync + 'static,
) -> RunningServer {
    let verified = move |Path(_): Path<String>, Query(span): Query<Span>| async move {
        respond(span.start.unwrap_or(0)..span.end.unwrap_or(u64::MAX))
    };
    let app = axum::Router::new().route("/blobs/{hash}/verified", get(verified)).route(
        "/blobs",
        put(|body: bytes::Bytes| async move {
            axum::Json(serde_json::json!({"hash": Hash::of(b"not it"), "size": body.len(), "pinned": false}))
        }),
    );
    RunningServer::start(app, LOCALHOST.parse::<SocketAddr>().unwrap()).await.unwrap()
}

/// The verified encoding of bytes `range` of `served` under the tree of `genuine`: what a node
/// that swapped bytes under a correct outboard would send.
fn encoding(genuine: &[u8], served: &[u8], claimed_size: u64, range: Range<u64>) -> Vec<u8> {
    let outboard = PreOrderMemOutboard::create(genuine, agora_store::tree::BLOCK_SIZE);
    let size = genuine.len() as u64;
    assert_eq!(outboard.tree, bao_tree(size));
    let mut out = claimed_size.to_le_bytes().to_vec();
    let ranges = proof_ranges(range.start..range.end.min(size), size);
    encode_ranges(served, &outboard, &ranges, &mut out).unwrap();
    out
}

#[tokio::test]
async fn a_lying_node_is_caught_at_the_first_bad_chunk_group() {
    let genuine = bytes(20 * G + 300, 9);
    let hash = Hash::of(&genuine);
    let mut forged = genuine.clone();
    forged[7 * G + 1234] ^= 0x40;
    let genuine_copy = genuine.clone();

    let liar =
        lying_node(move |range| encoding(&genuine_copy, &forged, genuine_copy.len() as u64, range)).await;
    let client = Client::new(&liar.url()).unwrap();
    let mut out = Vec::new();
    let mut progress = Vec::new();
    let err = client.download(&hash, None, &mut out, |d, _| progress.push(d)).await.unwrap_err();
    assert!(matches!(err, ClientError::Verification { offset, .. } if offset == 7 * G as u64), "{err}");
    assert!(err.to_string().contains("another node"));
    assert!(out == genuine[..7 * G], "every group before the bad one, nothing from it on");
    assert_eq!(progress.last(), Some(&(7 * G as u64)));

    // Same for a ranged download and a download to a file (which leaves no file behind).
    let mut out = Vec::new();
    let err =
        client.download(&hash, Some(6 * G as u64..8 * G as u64), &mut out, no_progress).await.unwrap_err();
    assert!(matches!(err, ClientError::Verification { .. }), "{err}");
    assert!(out == genuine[6 * G..7 * G]);
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("out");
    assert!(client.download_to_file(&hash, &target, None, no_progress).await.is_err());
    assert!(!target.exists() && entries(work.path()) == 0);

    // A node that claims the wrong hash for an upload is called out.
    let err = client.upload_bytes(genuine.clone(), false).await.unwrap_err();
    assert!(matches!(err, ClientError::UploadMismatch { .. }), "{err}");
    liar.shutdown().await.unwrap();
}

#[tokio::test]
async fn lies_about_size_truncation_and_extra_bytes_are_caught() {
    let genuine = bytes(5 * G + 1, 4);
    let hash = Hash::of(&genuine);
    let honest = encoding(&genuine, &genuine, genuine.len() as u64, 0..u64::MAX);

    let mut wrong_size = honest.clone();
    wrong_size[..8].copy_from_slice(&(4 * G as u64).to_le_bytes());
    let mut extra = honest.clone();
    extra.extend_from_slice(b"more");
    let cases: [(&str, Vec<u8>); 4] = [
        ("wrong size", wrong_size),
        ("truncated", honest[..honest.len() - 100].to_vec()),
        ("no size", honest[..5].to_vec()),
        ("extra bytes", extra),
    ];
    for (name, served) in cases {
        let liar = lying_node(move |_| served.clone()).await;
        let client = Client::new(&liar.url()).unwrap();
        let mut out = Vec::new();
        let err = client.download(&hash, None, &mut out, no_progress).await.unwrap_err();
        match name {
            "wrong size" => assert!(matches!(err, ClientError::Verification { .. }), "{name}: {err}"),
            "extra bytes" => {
                assert!(matches!(err, ClientError::TrailingData { extra: 4, .. }), "{name}: {err}")
            }
            _ => assert!(matches!(err, ClientError::Truncated { .. }), "{name}: {err}"),
        }
        assert!(out == genuine[..out.len()], "{name}: only verified bytes are written");
        liar.shutdown().await.unwrap();
    }

    let liar = lying_node(move |_| honest.clone()).await;
    let mut out = Vec::new();
    Client::new(&liar.url()).unwrap().download(&hash, None, &mut out, no_progress).await.unwrap();
    assert!(out == genuine, "the honest encoding passes");
    liar.shutdown().await.unwrap();
}

/// Admits accounts on a list, each for at most `quota` bytes; only the operator lists.
struct Listed {
    allowed: Vec<agora_core::PublicKey>,
    operator: agora_core::PublicKey,
    quota: u64,
    used: std::sync::Mutex<u64>,
}

impl agora_store::http::auth::WritePolicy for Listed {
    fn admit(&self, account: &agora_core::PublicKey, bytes: u64) -> Result<(), String> {
        if !self.allowed.contains(account) {
            return Err(format!("account {account} has no reason to store here"));
        }
        let mut used = self.used.lock().unwrap();
        if *used + bytes > self.quota {
            return Err("over quota".into());
        }
        *used += bytes;
        Ok(())
    }

    fn may_list(&self, account: &agora_core::PublicKey) -> bool {
        *account == self.operator
    }
}

#[tokio::test]
async fn writes_must_be_signed_by_an_admitted_account_within_its_quota() {
    use agora_core::SecretKey;
    let (requester, stranger, operator) = (
        SecretKey::from_label("requester"),
        SecretKey::from_label("stranger"),
        SecretKey::from_label("operator"),
    );
    let policy = Listed {
        allowed: vec![requester.public(), operator.public()],
        operator: operator.public(),
        quota: 100,
        used: Default::default(),
    };
    let config = ServerConfig {
        writers: agora_store::http::auth::Writers::Signed(std::sync::Arc::new(policy)),
        ..ServerConfig::open()
    };
    let node = Node::start(config).await;
    let http = reqwest::Client::new();

    // Anonymous: 401, with how to sign.
    let (status, msg) = error_of(http.put(node.url("/blobs")).body("hello").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(msg.contains("agora-signature"), "{msg}");
    assert!(
        matches!(node.client.upload_bytes(&b"hello"[..], true).await, Err(ClientError::Status { status, .. }) if status == 401)
    );
    assert!(node.store.list().unwrap().is_empty(), "nothing was stored");

    // Signed by an account the policy admits: stored.
    let mine = node.client.clone().with_signer(requester.clone());
    let info = mine.upload_bytes(&b"hello"[..], true).await.unwrap();
    assert!(node.store.has(&info.hash));
    mine.pin(&info.hash).await.expect("an admitted account may pin");
    // An account's pin is its own and lapses: it cannot hold the node's disk forever.
    let pins = node.store.pins(&info.hash).unwrap();
    let now = agora_store::http::auth::now_ms();
    assert_eq!(pins.len(), 1, "{pins:?}");
    assert_eq!(pins[0].owner, format!("upload:{}", requester.public()));
    let lapses = pins[0].until_ms.expect("an account's pin lapses");
    assert!(lapses > now && lapses <= now + agora_store::http::server::ACCOUNT_PIN_MS);
    assert!(!pins[0].holds_at(lapses));
    // Beyond its quota: 403.
    let over = mine.upload_bytes(vec![1u8; 200], false).await;
    assert!(matches!(over, Err(ClientError::Status { status, .. }) if status == 403), "{over:?}");
    // A stranger, however well signed: 403.
    let theirs = node.client.clone().with_signer(stranger);
    let refused = theirs.upload_bytes(&b"spam"[..], false).await;
    assert!(
        matches!(refused, Err(ClientError::Status { status, ref message, .. }) if status == 403 && message.contains("no reason"))
    );
    // Only the operator lists or unpins.
    assert!(matches!(mine.list().await, Err(ClientError::Status { status, .. }) if status == 403));
    assert!(matches!(mine.unpin(&info.hash).await, Err(ClientError::Status { status, .. }) if status == 403));
    let op = node.client.clone().with_signer(operator);
    assert_eq!(op.list().await.unwrap().len(), 1);
    op.pin(&info.hash).await.unwrap();
    assert!(
        node.store.pins(&info.hash).unwrap().contains(&agora_store::Pin::operator()),
        "the operator's pin holds"
    );
    op.unpin(&info.hash).await.unwrap();
    // Reads stay open: content addressing makes them safe to serve.
    let mut out = vec![];
    node.client.download(&info.hash, None, &mut out, |_, _| {}).await.unwrap();
    assert_eq!(out, b"hello");
    node.stop().await;
}
