//! Audit rollouts (SPEC §2 `mode: audit`, §6): a route in audit mode forwards what its rules
//! would deny, counts it as `requests_total{decision="audit_deny",reason=…}`, and adds identity
//! only for a token that verified.

mod support;

use support::*;

const ROUTES: &str = r#"routes:
  - name: reports-shadow
    path: /reports/**
    mode: audit
    require:
      groups_any: [Analysts]
  - name: admin
    path: /admin/**
    require:
      groups_any: [Analysts]
"#;

#[tokio::test]
async fn audit_mode_forwards_would_be_denials_and_counts_them() {
    let p = start_proxy(&config("access", ROUTES)).await;
    let staff = p.mint_access("staff-1", &["Staff"], "openid");
    let analyst = p.mint_access("ana-1", &["Analysts"], "openid");

    // Would be denied by the group rule: forwarded, with the verified identity.
    let resp = p.get("/reports/q1", Some(&staff)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(p.echo.last().all("x-user-sub"), vec!["staff-1"]);
    // Anonymous: forwarded too, but never with an identity.
    assert_eq!(p.get("/reports/q1", None).await.status(), 200);
    assert_eq!(p.echo.last().all("x-user-sub"), Vec::<&str>::new());
    // An invalid token is not an identity either.
    assert_eq!(p.get("/reports/q1", Some("e30.e30.c2ln")).await.status(), 200);
    assert_eq!(p.echo.last().all("x-user-sub"), Vec::<&str>::new());
    // Passing the rule is a plain allow.
    assert_eq!(p.get("/reports/q1", Some(&analyst)).await.status(), 200);

    let count = |decision: &str, reason: &str| {
        p.metric(
            "portcullis_requests_total",
            &[("route", "reports-shadow"), ("decision", decision), ("reason", reason)],
        )
    };
    assert_eq!(count("audit_deny", "forbidden_group"), 1.0);
    assert_eq!(count("audit_deny", "missing_token"), 1.0);
    assert_eq!(count("audit_deny", "bad_alg"), 1.0);
    assert_eq!(count("allow", "ok"), 1.0);
    assert_eq!(p.echo.count(), 4);

    // The same rule in enforce mode denies.
    assert_eq!(p.get("/admin/x", Some(&staff)).await.status(), 403);
    assert_eq!(p.metric("portcullis_requests_total", &[("route", "admin"), ("decision", "deny")]), 1.0);
    assert_eq!(p.echo.count(), 4);
}
