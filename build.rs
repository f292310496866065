//! Embeds the git commit in `--version`. A container build has no `.git` (see `.dockerignore`), so
//! `PORTCULLIS_GIT_COMMIT` in the build environment wins (the Dockerfile passes its `GIT_COMMIT`
//! build argument through it); outside a checkout and without it the commit is "unknown".
fn main() {
    println!("cargo:rerun-if-env-changed=PORTCULLIS_GIT_COMMIT");
    let from_env = std::env::var("PORTCULLIS_GIT_COMMIT").ok().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let commit = from_env.or_else(git_commit).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PORTCULLIS_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
}

fn git_commit() -> Option<String> {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
