//! Mint benchmark tokens: `cargo run --release --example mint -- DIR COUNT [ISSUER CLIENT_ID GROUP TTL_SECS]`.
//!
//! Writes, under `DIR`: `jwks.json` (the fresh public key), `tokens.txt` (COUNT distinct RS256
//! access tokens, one per line, each with its own `sub` and `jti`), and `badsig.txt` (one token
//! signed by another key under the same kid). Used by `scripts/bench-load.sh`; signing is spread
//! over every core because a 2048-bit RSA signature costs about a millisecond.
//!
//! For the session mode (browser sign-in, SPEC §8) it also writes `session-tokens.json` (what a
//! token endpoint returns on refresh: an id+access pair for `bench-session`) and `session-cookie.txt`
//! (a `__Host-portcullis` session cookie sealed with `SESSION_SECRET` below, holding a
//! Cognito-sized refresh token).

use std::io::Write;
use std::sync::Arc;

use portcullis::tools::mint::{SigningKey, access_claims, id_claims};

/// The session secret the benchmark's `login` block uses.
pub const SESSION_SECRET: &str = "bench-session-secret-0123456789abcdef";

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, count, rest @ ..] = args.as_slice() else {
        return Err("usage: mint DIR COUNT [ISSUER CLIENT_ID GROUP TTL_SECS]".into());
    };
    let count: usize = count.parse().map_err(|_| "COUNT must be a number")?;
    let arg = |i: usize, default: &str| rest.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let iss = arg(0, "http://127.0.0.1:9000/us-east-1_TEST");
    let client = arg(1, "3n4b5urk1ft4fl3mg5e62d9ado");
    let group = arg(2, "admins");
    let ttl: i64 = arg(3, "82800").parse().map_err(|_| "TTL_SECS must be a number")?;

    std::fs::create_dir_all(dir).map_err(|e| format!("{dir}: {e}"))?;
    let issuer = Arc::new(SigningKey::generate("bench-kid-1")?);
    let claims = move |i: usize| {
        let mut c = access_claims(&iss, &client, &format!("bench-user-{i}"), &[group.as_str()], "openid");
        let now = portcullis::tools::mint::now();
        c["exp"] = (now + ttl).into();
        c
    };
    let claims = Arc::new(claims);

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (issuer, claims) = (issuer.clone(), claims.clone());
            std::thread::spawn(move || {
                let (lo, hi) = (t * chunk, ((t + 1) * chunk).min(count));
                (lo..hi).map(|i| issuer.mint(&claims(i))).collect::<Vec<_>>()
            })
        })
        .collect();
    let path = format!("{dir}/tokens.txt");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(|e| format!("{path}: {e}"))?);
    for h in handles {
        for token in h.join().map_err(|_| "a minting thread panicked")? {
            writeln!(out, "{token}").map_err(|e| e.to_string())?;
        }
    }
    out.flush().map_err(|e| e.to_string())?;

    let forger = SigningKey::generate("bench-kid-1")?;
    let write = |name: &str, text: String| {
        std::fs::write(format!("{dir}/{name}"), text).map_err(|e| format!("{dir}/{name}: {e}"))
    };
    write("badsig.txt", forger.mint(&claims(0)) + "\n")?;
    write("jwks.json", issuer.jwks().to_string())?;

    // The session mode: a refresh answer and a sealed cookie.
    let iss = arg(0, "http://127.0.0.1:9000/us-east-1_TEST");
    let client = arg(1, "3n4b5urk1ft4fl3mg5e62d9ado");
    let group = arg(2, "admins");
    let now = portcullis::tools::mint::now();
    let mut access = access_claims(&iss, &client, "bench-session", &[group.as_str()], "openid");
    access["exp"] = (now + ttl).into();
    access["origin_jti"] = "bench-origin".into();
    let access = issuer.mint(&access);
    let mut id = id_claims(&iss, &client, "bench-session", &[group.as_str()], "bench@example.com");
    id["exp"] = (now + ttl).into();
    id["origin_jti"] = "bench-origin".into();
    id["at_hash"] = portcullis::auth::verify::at_hash(access.as_bytes()).into();
    let set = serde_json::json!({"access_token": access, "id_token": issuer.mint(&id), "token_type": "Bearer"});
    write("session-tokens.json", set.to_string())?;
    let sealer = portcullis::auth::login::seal::Sealer::new(
        &[portcullis::config::Secret(SESSION_SECRET.as_bytes().to_vec())],
        portcullis::auth::login::seal::Purpose::Session,
    )?;
    let refresh = format!("eyJjdHkiOiJKV1QiLCJlbmMiOiJBMjU2R0NNIiwiYWxnIjoiUlNBLU9BRVAifQ.{}", "A".repeat(1760));
    let cookie = portcullis::auth::login::sessions::SessionCookie::new("bench-session", &refresh, ttl as u64)
        .and_then(|c| c.encode())
        .and_then(|plain| sealer.seal(b"__Host-portcullis", &plain))
        .ok_or("sealing the session cookie failed")?;
    write("session-cookie.txt", cookie + "\n")?;
    Ok(())
}
