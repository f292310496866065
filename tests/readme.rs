//! The README is checked against the code wherever a statement can be: every `yaml` block loads
//! through the parser the binary uses (and so does `config.example.yaml`); the transcripts of the
//! repository's own example files are what the binary prints today; the Responses table lists
//! exactly the statuses a refusal can have, each reason named beside its own status; every metric
//! the code exports is named in "Operations" and every one named there is exported; every reason
//! and `check` lint code named anywhere is one the code has; the limits table's defaults are the
//! parser's.

use portcullis::http::error::{Reason, Rejection};

fn yaml_blocks(markdown: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```yaml" => current = Some((i + 2, String::new())),
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// A minimal complete config that README fragments are laid over.
const BASE: &str = r#"listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9901
upstream:
  url: http://127.0.0.1:8000
issuers:
  - name: main
    cognito: {region: eu-west-1, user_pool_id: eu-west-1_AbCdEf123}
    client_ids: [7abc123example]
    token_use: access
routes:
  - name: app
    path: /**
"#;

fn top_level_keys(yaml: &str) -> Vec<&str> {
    yaml.lines()
        .filter(|l| !l.starts_with([' ', '#', '-']) && !l.trim().is_empty())
        .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim()))
        .collect()
}

/// A block without `listen` is a fragment: its top-level keys replace the base's.
fn complete(fragment: &str) -> String {
    let keys = top_level_keys(fragment);
    if keys.contains(&"listen") {
        return fragment.to_owned();
    }
    let mut out = String::new();
    let mut skipping = false;
    for line in BASE.lines() {
        if !line.starts_with(' ') {
            skipping = line.split_once(':').is_some_and(|(k, _)| keys.contains(&k.trim()));
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out + fragment
}

/// The environment the README's examples name (secrets are never written into config files).
fn readme_env(name: &str) -> Option<String> {
    match name {
        "PORTCULLIS_CLIENT_SECRET" => Some("example-client-secret".into()),
        "PORTCULLIS_SESSION_SECRET" => Some("an-example-session-secret-of-48-random-bytes-xyz".into()),
        _ => None,
    }
}

#[test]
fn every_readme_yaml_block_is_a_valid_config() {
    let readme = include_str!("../README.md");
    let blocks = yaml_blocks(readme);
    assert!(blocks.len() > 5, "the README has a config reference and pattern snippets");
    for (line, text) in blocks {
        let text = complete(&text);
        if let Err(e) = portcullis::config::parse(&text, &format!("README.md (block at line {line})"), &readme_env) {
            panic!("README yaml block at line {line} does not load:\n{e}");
        }
    }
}

#[test]
fn config_example_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let config = portcullis::config::load(&path, &|_| None).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.issuers.iter().any(|i| i.cognito), "the example uses the Cognito shorthand");
}

const README: &str = include_str!("../README.md");

/// The fenced blocks of one language, with the line their content starts on.
fn fenced(markdown: &str, lang: &str) -> Vec<(usize, Vec<String>)> {
    let open = format!("```{lang}");
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<String>)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == open => current = Some((i + 2, Vec::new())),
            Some(_) if line.trim_start() == "```" => blocks.extend(current.take()),
            Some((_, lines)) => lines.push(line.to_owned()),
            None => {}
        }
    }
    blocks
}

/// The README text outside fenced blocks (where prose and tables name things).
fn prose(markdown: &str) -> String {
    let mut out = String::new();
    let mut fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
            continue;
        }
        if !fence {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Words written as inline code: `like_this`.
fn inline_code(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// Shell words, with single quotes as the README's transcripts use them.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quoted, mut any) = (Vec::new(), String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => (quoted, any) = (!quoted, true),
            ' ' if !quoted => {
                if any {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => (word, any) = (word + &c.to_string(), true),
        }
    }
    if any {
        words.push(word);
    }
    words
}

/// The `portcullis check`, `explain` and `test` transcripts of the repository's own example files
/// ("Every transcript below was captured from the real binary") are what the binary prints today.
#[test]
fn transcripts_of_the_example_files_are_what_the_binary_prints() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for (start, lines) in fenced(README, "console") {
        let mut i = 0;
        while i < lines.len() {
            let Some(command) = lines[i].strip_prefix("$ portcullis ") else {
                i += 1;
                continue;
            };
            let mut expected: Vec<&str> = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].starts_with("$ ") {
                expected.push(&lines[i]);
                i += 1;
            }
            while expected.last().is_some_and(|l| l.trim().is_empty()) {
                expected.pop();
            }
            let args = shell_words(command);
            // Only commands on files in the repository, without shell plumbing.
            let files_here = args.iter().filter(|a| a.ends_with(".yaml")).all(|a| root.join(a).is_file());
            if !files_here || command.contains(['|', ';', '#']) {
                continue;
            }
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .args(&args)
                .current_dir(root)
                .output()
                .expect("the binary runs");
            let got = String::from_utf8_lossy(&out.stdout);
            let got: Vec<&str> = got.trim_end().lines().collect();
            assert_eq!(
                got,
                expected,
                "README.md line {}: `portcullis {command}` prints something else now",
                start + i - expected.len() - 1
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "check, two explains and test are transcribed; checked {checked}");
}

/// A representative refusal of every kind, with the reason each carries.
fn refusals() -> Vec<Rejection> {
    let mut all: Vec<Rejection> = vec![
        Rejection::MissingToken,
        Rejection::InsufficientScope { scope: "s".into() },
        Rejection::UnencodableClaim,
        Rejection::KeysUnavailable,
        Rejection::MethodNotAllowed,
        Rejection::HeaderTooLarge,
        Rejection::UriTooLong,
        Rejection::UpstreamConnect,
        Rejection::UpstreamReset,
        Rejection::UpstreamTimeout,
        Rejection::UpstreamProtocol,
        Rejection::SignIn {
            location: http::HeaderValue::from_static("https://idp.example/"),
            reason: SignIn::MissingToken,
        },
        Rejection::SignIn {
            location: http::HeaderValue::from_static("https://idp.example/"),
            reason: SignIn::SessionExpired,
        },
        Rejection::LoginState,
        Rejection::LoginFailed,
        Rejection::SessionExpired,
        Rejection::IdpUnavailable,
    ];
    use portcullis::http::error::{BadRequest, Forbidden, InvalidToken, SignIn};
    all.extend(
        [
            InvalidToken::Malformed,
            InvalidToken::BadAlg,
            InvalidToken::UnknownKid,
            InvalidToken::BadSignature,
            InvalidToken::Expired,
            InvalidToken::NotYetValid,
            InvalidToken::BadIss,
            InvalidToken::BadTokenUse,
            InvalidToken::BadClient,
            InvalidToken::BadClaim,
        ]
        .map(Rejection::InvalidToken),
    );
    all.extend(
        [Forbidden::NoRoute, Forbidden::Group, Forbidden::Claim, Forbidden::Issuer, Forbidden::CrossSiteLogout]
            .map(Rejection::Forbidden),
    );
    all.extend(
        [BadRequest::Malformed, BadRequest::AmbiguousPath, BadRequest::AmbiguousCredential].map(Rejection::BadRequest),
    );
    all
}

/// SPEC §3 as the README states it: the Responses table names every status a refusal can have and
/// no other error status, and a reason written in a row is one a refusal of that status carries.
#[test]
fn responses_table_matches_the_refusal_mapping() {
    let section = README.split("\n## Responses\n").nth(1).expect("a Responses section");
    let table: Vec<&str> =
        section.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')).collect();
    let mut in_table = std::collections::BTreeSet::new();
    for row in table.iter().skip(2) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let status: u16 = cells[2].parse().unwrap_or_else(|_| panic!("status cell in {row}"));
        if status >= 400 {
            in_table.insert(status);
        }
        for word in inline_code(row) {
            if let Some(reason) = Reason::ALL.iter().find(|r| r.as_str() == word) {
                let statuses: Vec<u16> = refusals()
                    .into_iter()
                    .filter(|r| r.reason() == *reason)
                    .map(|r| r.into_response("t", None).status().as_u16())
                    .collect();
                assert!(statuses.contains(&status), "README row `{row}`: `{word}` never comes with {status}");
            }
        }
    }
    // The sign-in redirect (302) is a refusal too, but not an error status.
    let produced: std::collections::BTreeSet<u16> =
        refusals().into_iter().map(|r| r.into_response("t", None).status().as_u16()).filter(|s| *s >= 400).collect();
    assert_eq!(in_table, produced, "README Responses table vs the statuses error.rs gives refusals");
}

/// "Operations" names every metric Portcullis exports, and only those.
#[test]
fn operations_names_exactly_the_exported_metrics() {
    let m = portcullis::telemetry::metrics::Metrics::new();
    m.record_request("app", portcullis::http::error::Decision::Allow, Reason::Ok, 0.001);
    m.upstream_duration_seconds.with_label_values(&["app"]).observe(0.01);
    m.jwks_fetch_total.with_label_values(&["main", "ok"]).inc();
    m.jwks_refetch_suppressed_total.with_label_values(&["main"]).inc();
    m.jwks_keys.with_label_values(&["main"]).set(1);
    m.jwks_last_success_timestamp_seconds.with_label_values(&["main"]).set(1.0);
    m.stripped_headers_total.with_label_values(&["identity"]).inc();
    m.config_reloads_total.with_label_values(&["ok"]).inc();
    m.upstream_errors_total.with_label_values(&["connect"]).inc();
    m.core_connections_total.with_label_values(&["0"]).inc();
    m.logins_total.with_label_values(&["ok"]).inc();
    m.session_refresh_total.with_label_values(&["ok"]).inc();
    let exported: std::collections::BTreeSet<String> = m
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP portcullis_"))
        .map(|l| l.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    let ops = README.split("\n## Operations\n").nth(1).expect("an Operations section");
    let ops = &ops[..ops.find("\n## ").unwrap_or(ops.len())];
    let metrics_item = ops.split("\n- ").find(|item| item.starts_with("Metrics")).expect("a Metrics item");
    let named: std::collections::BTreeSet<String> = inline_code(metrics_item)
        .into_iter()
        .map(|w| w.split('{').next().unwrap_or_default().to_owned())
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !w.ends_with('_'))
        .collect();
    assert_eq!(named, exported, "README Operations → Metrics vs the registry");
}

/// Every reason the README names (`reason \`x\``, `reason="x"`, or in backquotes right after the
/// word "reason") is one the code has; a renamed reason cannot linger in the docs.
#[test]
fn every_reason_named_in_the_readme_exists() {
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    let text = prose(README);
    let mut named = Vec::new();
    for (i, _) in text.match_indices("reason") {
        // The word itself, not `reason` in code or part of another word.
        if !(i == 0 || text[..i].ends_with(|c: char| c.is_whitespace() || "(,{".contains(c))) {
            continue;
        }
        let after = text[i + "reason".len()..].trim_start_matches(['=', '"', ' ', ':']);
        let after = after.strip_prefix("s ").map_or(after, |a| a.trim_start());
        if let Some(rest) = after.strip_prefix('`') {
            named.push(rest.split('`').next().unwrap_or_default().to_owned());
        } else if text[i + "reason".len()..].starts_with("=\"") {
            named.push(after.split('"').next().unwrap_or_default().to_owned());
        }
    }
    for label in text.match_indices("reason=\"") {
        let rest = &text[label.0 + "reason=\"".len()..];
        named.push(rest.split('"').next().unwrap_or_default().to_owned());
    }
    // A status followed by a code word: "400 `ambiguous_path`", "401 `malformed_token`".
    for (i, _) in text.match_indices(" `") {
        let before = &text[..i];
        let status = &before[before.len().saturating_sub(3)..];
        let after = &text[i + 2..];
        if status.starts_with(['4', '5']) && status.bytes().all(|b| b.is_ascii_digit()) {
            named.push(after.split('`').next().unwrap_or_default().to_owned());
        }
    }
    named.sort();
    named.dedup();
    assert!(named.len() >= 6, "{named:?}");
    for word in named {
        let word = word.trim_matches(|c: char| !(c.is_ascii_lowercase() || c == '_'));
        assert!(reasons.contains(&word), "README names reason `{word}`, which Portcullis does not have");
    }
}

/// The `check` lint codes the README lists are exactly the ones `check` emits.
#[test]
fn lint_codes_in_the_readme_are_the_real_ones() {
    let source = include_str!("../src/config/lint.rs");
    let mut codes = std::collections::BTreeSet::new();
    for (i, _) in source.match_indices("finding(") {
        let rest = source[i + "finding(".len()..].trim_start();
        if let Some(code) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
            codes.insert(code.to_owned());
        }
    }
    assert!(codes.len() >= 6, "{codes:?}");
    let section = README.split("### `portcullis check`").nth(1).expect("a check section");
    let para = &section[..section.find("```").unwrap_or(section.len())];
    // The codes are the list's items; what the parentheses explain (claims, paths) is not.
    let (mut depth, mut items) = (0, String::new());
    for c in para.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            c if depth == 0 => items.push(c),
            _ => {}
        }
    }
    let named: std::collections::BTreeSet<String> = inline_code(&items)
        .into_iter()
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_owned)
        .collect();
    assert_eq!(named, codes, "README `portcullis check` lint codes vs src/lint.rs");
}

/// The "Limits and their defaults" table states the parser's defaults.
#[test]
fn limits_table_defaults_are_the_parsers() {
    let config = portcullis::config::parse(BASE, "base.yaml", &|_| None).expect("base config");
    let l = &config.limits;
    let section = README.split("**Limits and their defaults**").nth(1).expect("a limits table");
    let mut checked = 0;
    for row in section.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (setting, default) = (cells[1].trim_matches('`'), cells[2]);
        let want = match setting {
            "header_read_timeout" => format!("{}s", l.header_read_timeout.as_secs()),
            "max_header_bytes" => l.max_header_bytes.to_string(),
            "max_uri_bytes" => l.max_uri_bytes.to_string(),
            "max_token_bytes" => l.max_token_bytes.to_string(),
            "max_identity_header_bytes" => l.max_identity_header_bytes.to_string(),
            "max_connections" => l.max_connections.to_string(),
            "token_cache_entries" => l.token_cache_entries.to_string(),
            "upstream.idle_timeout" => format!("{}s", config.upstream.idle_timeout.as_secs()),
            _ => continue,
        };
        assert_eq!(default, want, "README limits table, `{setting}`");
        checked += 1;
    }
    assert_eq!(checked, 8, "every limit row was compared");
}
