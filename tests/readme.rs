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

#[test]
fn every_readme_yaml_block_is_a_valid_config() {
    let readme = include_str!("../README.md");
    let blocks = yaml_blocks(readme);
    assert!(!blocks.is_empty(), "the README has a config reference");
    for (line, text) in blocks {
        if let Err(e) = portcullis::config::parse(&text, &format!("README.md (block at line {line})"), &|_| None) {
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
