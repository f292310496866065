//! `portcullis schema`: a JSON Schema (draft 2020-12) of the config file, for editors — the VS
//! Code YAML extension validates and autocompletes `portcullis.yaml` with a modeline:
//! `# yaml-language-server: $schema=./portcullis.schema.json`.
//!
//! The schema is written here by hand (with descriptions) and kept in sync with the parser by
//! tests: every mapping in [`crate::config::SCHEMA_KEYS`] must have exactly the same properties
//! here, closed with `additionalProperties: false`, and the committed `portcullis.schema.json`
//! must equal this output. The parser remains the authority: the schema catches typos and types
//! while you type; `portcullis check` catches everything.

use serde_json::{Value, json};

const DURATION: &str = "^[0-9]+(ms|s|m|h|d)$";
const ADDRESS: &str = "^(\\[[0-9A-Fa-f:.]+\\]|[0-9.]+):[0-9]{1,5}$";

fn duration(description: &str) -> Value {
    json!({"type": "string", "pattern": DURATION, "description": description})
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn boolean(description: &str) -> Value {
    json!({"type": "boolean", "description": description})
}

fn integer(description: &str, min: u64, max: u64) -> Value {
    json!({"type": "integer", "minimum": min, "maximum": max, "description": description})
}

fn list(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string"}, "minItems": 1, "description": description})
}

fn object(description: &str, properties: Value, required: &[&str]) -> Value {
    let mut o = json!({
        "type": "object",
        "description": description,
        "additionalProperties": false,
        "properties": properties,
    });
    if !required.is_empty() {
        o["required"] = json!(required);
    }
    o
}

fn token_use(description: &str) -> Value {
    json!({"enum": ["access", "id", "any"], "description": description})
}

/// The JSON Schema of the config file.
pub fn schema() -> Value {
    let upstream = object(
        "The app behind Portcullis.",
        json!({
            "url": {"type": "string", "pattern": "^(http://|unix:/)", "description": "http://host:port or unix:/path/to.sock (no path, no query)."},
            "connect_timeout": duration("Connect timeout (default 2s)."),
            "timeout": duration("Until the response headers arrive; then 504 (default 30s)."),
            "idle_timeout": duration("A body that stalls this long is cut (default 60s)."),
            "http2": boolean("Prior-knowledge HTTP/2 to the upstream (default false)."),
        }),
        &["url"],
    );
    let tls = object(
        "Terminate TLS on `listen`. The files are reloaded when they change.",
        json!({
            "cert_file": string("PEM certificate chain, leaf first."),
            "key_file": string("PEM private key matching the certificate."),
        }),
        &["cert_file", "key_file"],
    );
    let cognito = object(
        "Derive issuer and JWKS URL from the user pool.",
        json!({
            "region": {"type": "string", "pattern": "^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", "description": "AWS region, e.g. eu-west-1."},
            "user_pool_id": {"type": "string", "pattern": "^[a-z]{2}(-gov)?-[a-z]+-[0-9]_[A-Za-z0-9]+$", "description": "<region>_<letters and digits>."},
        }),
        &["region", "user_pool_id"],
    );
    let issuer = object(
        "A token issuer: `cognito`, or `issuer` with `jwks_uri` or `jwks_file`.",
        json!({
            "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "description": "Name used in require.issuers, metrics and logs."},
            "cognito": cognito,
            "issuer": string("The exact `iss` value (any OIDC issuer)."),
            "jwks_uri": {"type": "string", "pattern": "^https?://", "description": "https:// (http:// only for loopback hosts)."},
            "jwks_file": string("A local JWKS file, re-read on refresh."),
            "client_ids": list("App client ids: `client_id` of access tokens, `aud` of id tokens."),
            "token_use": token_use("Which tokens this issuer accepts. No default."),
            "verify_at_hash": boolean("id+access pairs: the id token's at_hash must match the access token."),
        }),
        &["name", "client_ids", "token_use"],
    );
    let jwks = object(
        "JWKS fetching and caching.",
        json!({
            "refresh_interval": duration("Periodic refetch (default 1h)."),
            "kid_miss_cooldown": duration("At most one refetch per issuer per window on an unknown kid (default 10s)."),
            "fetch_timeout": duration("Whole fetch (default 3s)."),
            "max_stale": duration("Serve the last good keys this long while fetches fail (default 24h)."),
            "max_bytes": integer("Larger bodies are a failed fetch (default 262144).", 0, u64::MAX),
            "max_keys": integer("More keys are a failed fetch (default 100).", 0, u64::MAX),
            "ca_file": string("Extra trust anchor (PEM) for the JWKS endpoint."),
            "proxy": {"type": "string", "pattern": "^https?://", "description": "Explicit egress proxy; HTTP(S)_PROXY is ignored."},
        }),
        &[],
    );
    let credentials = json!({
        "type": "array",
        "minItems": 1,
        "description": "Where tokens are read from (default: [bearer]).",
        "items": {"oneOf": [
            {"const": "bearer", "description": "Authorization: Bearer <jwt>."},
            object("Bearer with options.", json!({"bearer": object("", json!({"allow_raw": boolean("Also accept a bare <jwt> without a scheme.")}), &[])}), &["bearer"]),
            object("A raw JWT in a named header.", json!({"header": {"type": "string", "pattern": "^[A-Za-z0-9-]+$"}}), &["header"]),
            object("A cookie holding a JWT, or `amplify` for Amplify CookieStorage.", json!({"cookie": string("Cookie name, or amplify.")}), &["cookie"]),
        ]},
    });
    let identity = object(
        "Identity headers added for verified tokens (every client copy is removed first).",
        json!({
            "sub": {"type": "string", "pattern": "^[A-Za-z0-9-]+$", "description": "Header for the `sub` claim (default X-User-Sub)."},
            "groups": {"type": "string", "pattern": "^[A-Za-z0-9-]+$", "description": "Header for cognito:groups (default X-User-Groups)."},
            "groups_format": {"enum": ["csv", "json"], "description": "csv: names percent-encoded then comma-joined; json: an array."},
            "claims": {
                "type": "object",
                "description": "Extra header → claim mappings; an absent claim gives no header.",
                "propertyNames": {"pattern": "^[A-Za-z0-9-]+$"},
                "additionalProperties": {"type": "string", "minLength": 1},
            },
            "forward_token": boolean("Pass the original credential to the app (default false)."),
        }),
        &[],
    );
    let require = object(
        "Conditions that must all hold.",
        json!({
            "scopes_any": list("At least one of these scopes (${client_id} is expanded)."),
            "scopes_all": list("All of these scopes."),
            "groups_any": list("Member of at least one of these cognito:groups."),
            "groups_all": list("Member of all of these groups."),
            "token_use": token_use("Narrow the issuer's token_use for this route."),
            "issuers": list("Only tokens from these issuers (by name)."),
            "claims": {
                "type": "object",
                "minProperties": 1,
                "description": "claim → exact string or list of allowed strings.",
                "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
            },
        }),
        &[],
    );
    let route = object(
        "A route: the most specific matching pattern wins; file order does not matter.",
        json!({
            "name": {"type": "string", "pattern": "^[A-Za-z0-9._-]+$", "not": {"const": "none"}, "description": "Route name (metrics, logs)."},
            "path": {"type": "string", "pattern": "^/", "description": "Exact /a/b, * for one segment, trailing /** for a subtree."},
            "methods": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[A-Z]+$"}, "description": "Upper-case methods; absent = all. HEAD is matched as GET."},
            "auth": {"enum": ["required", "optional", "none"], "description": "Default required."},
            "mode": {"enum": ["enforce", "audit"], "description": "audit: forward, but log and count what would be denied."},
            "require": require,
            "login": boolean("false: never redirect this route's navigations to sign in (a session still authenticates). Default true."),
        }),
        &["name", "path"],
    );
    let https_url = |d: &str| json!({"type": "string", "pattern": "^https?://", "description": d});
    let login = object(
        "Browser sign-in through Cognito's managed login (SPEC §8): authorization code + PKCE, a sealed session cookie.",
        json!({
            "issuer": string("A configured issuer (by name); users sign in to its pool."),
            "client_id": string("An app client of that pool; must be in the issuer's client_ids."),
            "client_secret": string("Optional (confidential client): HTTP Basic at the token endpoint. Use ${env:NAME}."),
            "domain": https_url("Cognito domain (prefix or custom); gives /oauth2/authorize, /oauth2/token, /oauth2/revoke, /logout."),
            "endpoints": object("Instead of `domain`: any OIDC provider's endpoints.", json!({
                "authorize": https_url("Authorization endpoint."),
                "token": https_url("Token endpoint."),
                "revoke": https_url("Revocation endpoint (optional)."),
                "logout": https_url("Logout endpoint taking client_id and logout_uri (optional)."),
            }), &["authorize", "token"]),
            "public_url": https_url("The origin browsers use; the callback is <public_url>/.portcullis/callback."),
            "scopes": list("Requested scopes; must include openid (default [openid, email, profile])."),
            "after_logout_url": https_url("Where sign-out ends (Cognito logout_uri; register it as a sign-out URL). Default <public_url>/."),
            "session": object("The session cookie.", json!({
                "secrets": {"type": "array", "items": {"type": "string", "minLength": 32}, "minItems": 1, "description": "Each ≥ 32 bytes; the first seals, every one opens (rotation)."},
                "lifetime": duration("Absolute session lifetime (default 12h)."),
                "cookie": {"type": "string", "pattern": "^__Host-", "description": "Session cookie name (default __Host-portcullis)."},
            }), &["secrets"]),
        }),
        &["issuer", "client_id", "public_url", "session"],
    );
    let mut root = object(
        "Portcullis configuration (SPEC §2).",
        json!({
            "listen": {"type": "string", "pattern": ADDRESS, "description": "address:port clients reach."},
            "admin_listen": {"type": "string", "pattern": ADDRESS, "description": "/healthz /readyz /metrics (default 127.0.0.1:9901)."},
            "upstream": upstream,
            "tls": tls,
            "issuers": {"type": "array", "minItems": 1, "items": issuer, "description": "Token issuers."},
            "jwks": jwks,
            "leeway": duration("Clock skew allowed on exp/nbf/iat (default 30s, at most 5m)."),
            "max_token_lifetime": duration("exp further in the future than this is refused (default 24h)."),
            "credentials": credentials,
            "identity_headers": identity,
            "cors_preflight": {"enum": ["pass", "authenticate"], "description": "pass: forward genuine preflights unauthenticated."},
            "match": object("Route matching.", json!({"case_insensitive": boolean("Compare literals case-insensitively.")}), &[]),
            "shutdown": object("SIGTERM behaviour.", json!({
                "delay": duration("Keep accepting after SIGTERM (default 5s)."),
                "grace": duration("Then drain in-flight requests at most this long (default 20s)."),
            }), &[]),
            "limits": object("Request limits.", json!({
                "header_read_timeout": duration("Slowloris bound (default 10s)."),
                "max_header_bytes": integer("Request line + headers (default 32768).", 8192, 1_048_576),
                "max_uri_bytes": integer("Longer request targets are 414 (default 8192).", 256, 1_048_576),
                "max_token_bytes": integer("Longer tokens are 401 malformed_token (default 16384).", 256, 1_048_576),
                "max_identity_header_bytes": integer("All identity headers together (default 8192).", 64, 1_048_576),
                "max_connections": integer("Further connections are closed at accept (default 10000).", 1, 10_000_000),
                "token_cache_entries": integer("Verified-token cache bound (default 100000).", 0, 100_000_000),
            }), &[]),
            "routes": {"type": "array", "minItems": 1, "items": route, "description": "Unmatched requests are denied (403 no_route)."},
            "login": login,
        }),
        &["listen", "upstream", "issuers", "routes"],
    );
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    root["title"] = json!("Portcullis configuration");
    root
}

/// The schema as pretty JSON with a trailing newline (what `portcullis schema` prints).
pub fn render() -> String {
    format!("{}\n", serde_json::to_string_pretty(&schema()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The object schema at a SCHEMA_KEYS path (`issuers[].cognito`, `credentials[].bearer`).
    fn at<'a>(root: &'a Value, path: &str) -> &'a Value {
        let mut node = root;
        if path.is_empty() {
            return node;
        }
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let (name, array) = match part.strip_suffix("[]") {
                Some(n) => (n, true),
                None => (*part, false),
            };
            node = node
                .get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| {
                    // A oneOf of objects: the variant that has this property.
                    node.get("oneOf")?.as_array()?.iter().find_map(|v| v.get("properties")?.get(name))
                })
                .unwrap_or_else(|| panic!("schema has no `{name}` at `{path}`"));
            if array {
                node = &node["items"];
                if let Some(next) = parts.get(i + 1)
                    && let Some(variants) = node.get("oneOf").and_then(Value::as_array)
                {
                    node = variants
                        .iter()
                        .find(|v| v.get("properties").is_some_and(|p| p.get(*next).is_some()))
                        .unwrap_or_else(|| panic!("no variant with `{next}` at `{path}`"));
                }
            }
        }
        node
    }

    #[test]
    fn every_parser_mapping_has_exactly_its_keys_in_the_schema() {
        let root = schema();
        for (path, keys) in crate::config::SCHEMA_KEYS {
            let node = at(&root, path);
            assert_eq!(node["additionalProperties"], json!(false), "`{path}` is closed");
            let in_schema: BTreeSet<&str> =
                node["properties"].as_object().unwrap().keys().map(String::as_str).collect();
            let in_parser: BTreeSet<&str> = keys.iter().copied().collect();
            assert_eq!(in_schema, in_parser, "keys of `{path}`: schema vs parser");
        }
    }

    #[test]
    fn the_committed_schema_file_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("portcullis.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == render(),
            "portcullis.schema.json is out of date: run `cargo run -- schema > portcullis.schema.json`"
        );
    }
}
