//! The README's configuration reference is real: every `yaml` block in it must load through the
//! same parser the binary uses, and `config.example.yaml` must load too.

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
