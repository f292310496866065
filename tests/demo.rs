//! `portcullis demo` works as the README promises: the printed curl lines hit a real proxy that
//! forwards identity for valid tokens, refuses anonymous requests and enforces the admin group.

use std::net::SocketAddr;

#[tokio::test]
async fn demo_serves_the_printed_examples() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let demo = portcullis::tools::demo::start(any, any).await.unwrap();
    assert!(demo.app.shared.is_ready(), "the demo waits for its keys");
    let text = portcullis::tools::demo::instructions(&demo);
    let curls: Vec<&str> = text.lines().filter(|l| l.starts_with("curl ")).collect();
    assert!(curls.len() >= 6, "{text}");
    assert!(text.contains(&demo.user_token) && text.contains(&demo.admin_token));

    let base = format!("http://{}", demo.app.proxy_addr);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |path: &str, token: Option<&str>, extra: Option<(&str, &str)>| {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((k, v)) = extra {
            req = req.header(k, v);
        }
        req.send()
    };

    let public = get("/public/hello", None, Some(("X-User-Sub", "forged"))).await.unwrap();
    assert_eq!(public.status(), 200);
    let body: serde_json::Value = public.json().await.unwrap();
    assert_eq!(body["x-user-sub"], serde_json::Value::Null, "spoofed identity stripped on public routes");

    assert_eq!(get("/orders", None, None).await.unwrap().status(), 401);

    let user = get("/orders", Some(&demo.user_token), Some(("X-User-Groups", "Admins"))).await.unwrap();
    assert_eq!(user.status(), 200);
    let body: serde_json::Value = user.json().await.unwrap();
    assert_eq!(body["x-user-sub"], "bob-0002");
    assert_eq!(body["x-user-groups"], "Readers", "the forged group never reaches the app");
    assert_eq!(body["authorization_forwarded"], false);

    assert_eq!(get("/admin/panel", Some(&demo.user_token), None).await.unwrap().status(), 403);
    let admin = get("/admin/panel", Some(&demo.admin_token), None).await.unwrap();
    assert_eq!(admin.status(), 200);
    let body: serde_json::Value = admin.json().await.unwrap();
    assert_eq!(body["x-user-groups"], "Admins");

    let ready = client.get(format!("http://{}/readyz", demo.app.admin_addr)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    demo.app.stop().await;
}
