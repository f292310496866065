//! WebSocket handshakes are authorised like any request and, once the app answers 101, bytes flow
//! both ways through Portcullis, also after one side half-closes. Unauthenticated handshakes never
//! reach the app (SECURITY SMUG-08).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis::tools::mint::{SigningKey, access_claims};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ISS: &str = "http://127.0.0.1:1/pool";

async fn read_head(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// An app that accepts one WebSocket-style upgrade per connection and then echoes bytes.
async fn upgrade_app(hits: Arc<AtomicUsize>, heads: Arc<std::sync::Mutex<Vec<String>>>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let (hits, heads) = (hits.clone(), heads.clone());
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                if head.is_empty() {
                    return;
                }
                hits.fetch_add(1, Ordering::SeqCst);
                heads.lock().unwrap().push(head);
                s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                    .await
                    .unwrap();
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_upgrade_is_authorised_then_tunnelled() {
    let issuer = SigningKey::generate("k1").unwrap();
    let dir = std::env::temp_dir().join(format!("portcullis-ws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(std::sync::Mutex::new(Vec::new()));
    let app_addr = upgrade_app(hits.clone(), heads.clone()).await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: http://{app_addr}\nissuers:\n  - name: main\n    issuer: {ISS}\n    jwks_file: {}\n    client_ids: [c1]\n    token_use: access\nroutes:\n  - name: ws\n    path: /ws\n",
        jwks.display()
    );
    let config = portcullis::config::parse(&yaml, "ws.yaml", &|_| None).unwrap();
    let app = portcullis::App::start(config).await.unwrap();
    for _ in 0..250 {
        if app.shared.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.shared.is_ready());

    let handshake = |token: Option<String>| {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        format!(
            "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-User-Sub: forged\r\n{auth}\r\n"
        )
    };

    // Anonymous handshake: 401, the app never sees it.
    let mut s = TcpStream::connect(app.proxy_addr).await.unwrap();
    s.write_all(handshake(None).as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Authorised handshake: 101, identity on the handshake, then an opaque tunnel.
    let token = issuer.mint(&access_claims(ISS, "c1", "user-ws", &["G"], "openid"));
    let mut s = TcpStream::connect(app.proxy_addr).await.unwrap();
    s.write_all(handshake(Some(token)).as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping-through-the-tunnel").await.unwrap();
    let mut echoed = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed)).await.unwrap().unwrap();
    assert_eq!(&echoed, b"ping-through-the-tunnel");

    let upstream_head = heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(upstream_head.contains("x-user-sub: user-ws\r\n"), "{upstream_head}");
    assert!(!upstream_head.contains("forged"), "{upstream_head}");
    assert!(upstream_head.contains("upgrade: websocket\r\n"), "{upstream_head}");
    assert!(!upstream_head.contains("authorization:"), "{upstream_head}");
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// An app that answers the upgrade, at once closes its sending side, and records every byte the
/// client sends afterwards, until the client's EOF.
async fn half_closing_app() -> (std::net::SocketAddr, tokio::sync::oneshot::Receiver<Vec<u8>>) {
    // A small receive buffer makes the proxy's writes to the app wait often, which is when a
    // lingering shutdown on the client side would get to read the client's bytes first.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let addr = listener.local_addr().unwrap();
    let (received, bytes) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .await
            .unwrap();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        let _ = received.send(rest);
    });
    (addr, bytes)
}

/// The lingering close that lets refused clients read their answer (SPEC §3) must not apply to
/// a tunnel: when the app half-closes after the 101, what the client still sends reaches the app
/// instead of being read away by the proxy's shutdown.
#[tokio::test]
async fn a_half_closed_tunnel_still_carries_the_clients_bytes() {
    let issuer = SigningKey::generate("k1").unwrap();
    let dir = std::env::temp_dir().join(format!("portcullis-ws-half-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let (app_addr, received) = half_closing_app().await;
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: http://{app_addr}\nissuers:\n  - name: main\n    issuer: {ISS}\n    jwks_file: {}\n    client_ids: [c1]\n    token_use: access\nroutes:\n  - name: ws\n    path: /ws\n    auth: none\n",
        jwks.display()
    );
    let config = portcullis::config::parse(&yaml, "ws.yaml", &|_| None).unwrap();
    let app = portcullis::App::start(config).await.unwrap();

    let mut s = TcpStream::connect(app.proxy_addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The app's half-close arrives as EOF...
    let mut nothing = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut nothing)).await.unwrap().unwrap();
    assert!(nothing.is_empty());
    // ...and the client's side of the tunnel still carries everything it sends.
    let talk: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let (_rd, mut wr) = s.into_split();
    let sent = talk.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(&sent).await.unwrap();
        wr.shutdown().await.unwrap();
    });
    let received = tokio::time::timeout(Duration::from_secs(5), received).await.unwrap().unwrap();
    writer.await.unwrap();
    assert!(received == talk, "the app got {} of {} bytes", received.len(), talk.len());
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
