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

#[tokio::test]
async fn demo_offers_browser_sign_in_with_its_demo_users() {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let demo = portcullis::tools::demo::start(any, any).await.unwrap();
    let text = portcullis::tools::demo::instructions(&demo);
    assert!(text.contains(&format!("open {} in a browser", demo.browser_url)), "{text}");
    let client = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let mut cookies: Vec<String> = Vec::new();
    let keep = |r: &reqwest::Response, cookies: &mut Vec<String>| {
        for c in r.headers().get_all("set-cookie") {
            let pair = c.to_str().unwrap().split(';').next().unwrap().to_owned();
            let name = pair.split('=').next().unwrap().to_owned();
            cookies.retain(|p| !p.starts_with(&format!("{name}=")));
            if !c.to_str().unwrap().contains("Max-Age=0") {
                cookies.push(pair);
            }
        }
    };
    // The browser opens the printed address and is sent to the demo's sign-in page.
    let start = client.get(&demo.browser_url).header("sec-fetch-mode", "navigate").send().await.unwrap();
    assert_eq!(start.status(), 302);
    keep(&start, &mut cookies);
    let page = client.get(start.headers()["location"].to_str().unwrap()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let page_url = page.url().clone();
    let html = page.text().await.unwrap();
    assert!(html.contains("Alice") && html.contains("Bob"), "{html}");
    // Pick alice: back to the callback, then to the page asked for.
    let href = html.split("href=\"").find(|s| s.contains("user=alice")).unwrap().split('"').next().unwrap();
    let chosen = client.get(page_url.join(&href.replace("&amp;", "&")).unwrap()).send().await.unwrap();
    assert_eq!(chosen.status(), 302);
    let callback = chosen.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&format!("{}.portcullis/callback?", demo.browser_url)));
    let done = client.get(&callback).header("cookie", cookies.join("; ")).send().await.unwrap();
    assert_eq!(done.status(), 303);
    keep(&done, &mut cookies);
    let app = client.get(&demo.browser_url).header("cookie", cookies.join("; ")).send().await.unwrap();
    assert_eq!(app.status(), 200);
    let body: serde_json::Value = app.json().await.unwrap();
    assert_eq!(body["x-user-sub"], "alice-0001");
    assert_eq!(body["x-user-groups"], "Admins");
    // Signing out ends at the demo's logout endpoint, which returns to the app.
    let out = client
        .post(format!("{}.portcullis/logout", demo.browser_url))
        .header("cookie", cookies.join("; "))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let logout = client.get(out.headers()["location"].to_str().unwrap()).send().await.unwrap();
    assert_eq!(logout.headers()["location"].to_str().unwrap(), demo.browser_url);
    demo.app.stop().await;
}
