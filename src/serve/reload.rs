//! Hot reload (SPEC §6 "Reload"): re-read the config file (and the TLS certificate and key it
//! names), validate everything, build a complete new [`Runtime`], and only then swap it in
//! atomically. Requests already running keep the snapshot they loaded (`pipeline::handle` holds one
//! `Arc<Runtime>` from start to end), so a reload never changes the rules under a request.
//!
//! Triggers: SIGHUP (always re-applies, even unchanged content) and changes in the directories
//! holding the config, cert and key files. Directories rather than files are watched so that
//! editors that write a temporary file and rename it, and Kubernetes ConfigMaps/Secrets that swap
//! a `..data` symlink, are both seen. Events are debounced, and a file-triggered reload is skipped
//! when the SHA-256 of the content (config + cert + key) did not change.
//!
//! Choices (README "Operating Portcullis"):
//! - An invalid file changes nothing: it is logged with file:line:col, counted as
//!   `config_reloads_total{result="error"}`, and the old config keeps serving.
//! - A new issuer's JWKS must load before the swap (bounded wait); if it cannot, the reload is
//!   rejected. Applying it anyway would turn that issuer's users into 503s and readiness false on
//!   every replica at once — a config push must never be able to cause that.
//! - Settings bound at start (`listen`, `admin_listen`, turning `tls` on or off, listener limits,
//!   `shutdown.grace`) cannot change in place: the rest of the config is applied and a warning
//!   names what needs a restart. Rejecting the whole reload instead would keep an older — possibly
//!   looser — policy serving because of an unrelated port edit.
//!
//! Does not own parsing (`config`), key caches (`jwks`) or the listener (`server`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{self, Config, lint};
use crate::proxy::runtime::{Runtime, Shared};
use crate::serve::app::App;
use crate::serve::server::{self, CertStore};

/// Quiet period after the last file event before reading (editors and `kubectl` write in bursts).
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// However busy the directory, read at least this often once an event arrived.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);

/// What started a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: apply even if nothing changed (SPEC §6: the generation still increases).
    Signal,
    /// A file event: apply only if the content changed.
    FileChange,
}

/// The result of a reload that did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied {
        generation: i64,
        /// Changed settings that only take effect after a restart.
        restart_needed: Vec<String>,
    },
    /// File event, but the content is what was last applied — or last rejected, which is not
    /// re-parsed and re-logged for every unrelated event in the directory.
    Unchanged,
}

/// A reload that was rejected; the previous config keeps serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .messages.join("\n"))]
pub struct ReloadError {
    pub messages: Vec<String>,
}

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Settings fixed when the listeners were bound.
#[derive(Debug, Clone)]
struct Bound {
    listen: std::net::SocketAddr,
    admin_listen: std::net::SocketAddr,
    tls: bool,
    server: server::ListenerSettings,
}

/// Reloads one app from one config file. Reloads are serialised.
pub struct Reloader {
    shared: Arc<Shared>,
    tls: Option<Arc<CertStore>>,
    path: PathBuf,
    env: Box<EnvLookup>,
    bound: Bound,
    /// Digests of the last applied and last rejected content; held while a reload runs so
    /// reloads never interleave.
    seen: tokio::sync::Mutex<Seen>,
    /// How long a new issuer may take to deliver its first key set.
    keys_timeout: Duration,
}

impl Reloader {
    /// A reloader for `app`, whose config was loaded from `path`. `env` resolves `${env:NAME}`.
    pub fn new(app: &App, path: &Path, env: Box<EnvLookup>) -> Arc<Reloader> {
        let rt = app.shared.runtime.load();
        let bound = Bound {
            listen: rt.config.listen,
            admin_listen: rt.config.admin_listen,
            tls: rt.config.tls.is_some(),
            server: server::ListenerSettings::from(&rt.config),
        };
        let digest = std::fs::read(path).ok().and_then(|text| digest(&text, rt.config.tls.as_ref()).ok());
        let keys_timeout = rt.config.jwks.fetch_timeout + Duration::from_secs(2);
        Arc::new(Reloader {
            shared: app.shared.clone(),
            tls: app.tls_certs.clone(),
            path: path.to_owned(),
            env,
            bound,
            seen: tokio::sync::Mutex::new(Seen { applied: digest.unwrap_or_default(), rejected: None }),
            keys_timeout,
        })
    }

    /// Validate the file and, if everything holds, swap it in. Meters and logs the outcome.
    pub async fn reload(&self, trigger: Trigger) -> Result<Outcome, ReloadError> {
        let mut seen = self.seen.lock().await;
        let metrics = &self.shared.metrics;
        match self.prepare(trigger, &mut seen).await {
            Ok(None) => Ok(Outcome::Unchanged),
            Ok(Some(next)) => {
                let restart_needed = self.restart_needed(&next.runtime.config);
                let runtime = Arc::new(next.runtime);
                self.shared.runtime.store(runtime.clone());
                if let (Some(store), Some(key)) = (&self.tls, next.certified) {
                    store.store(key);
                }
                seen.applied = next.digest;
                seen.rejected = None;
                metrics.config_reloads_total.with_label_values(&["ok"]).inc();
                metrics.config_generation.inc();
                let generation = metrics.config_generation.get();
                for what in &restart_needed {
                    tracing::warn!(setting = %what, "config reload: this setting changed but needs a restart; the running value stays");
                }
                tracing::info!(generation, trigger = ?trigger, file = %self.path.display(), "config reloaded");
                // The new config's lint findings, as `run` logs them at start.
                lint::log_findings(&runtime.config);
                Ok(Outcome::Applied { generation, restart_needed })
            }
            Err(e) => {
                metrics.config_reloads_total.with_label_values(&["error"]).inc();
                for m in &e.messages {
                    tracing::error!(error = %m, "config reload rejected; the previous config keeps serving");
                }
                Err(e)
            }
        }
    }

    async fn prepare(&self, trigger: Trigger, seen: &mut Seen) -> Result<Option<Next>, ReloadError> {
        let fail = |m: String| ReloadError { messages: vec![m] };
        let file = self.path.display().to_string();
        // Read once: the digests and the parse see the same bytes.
        let bytes = std::fs::read(&self.path).map_err(|e| fail(format!("{file}: cannot read config: {e}")))?;
        let file_changed = trigger == Trigger::FileChange;
        let text_digest = digest(&bytes, None).map_err(fail)?;
        if file_changed && seen.rejected == Some(text_digest) {
            return Ok(None);
        }
        let source = String::from_utf8(bytes).map_err(|_| {
            seen.rejected = Some(text_digest);
            fail(format!("{file}: the config is not UTF-8"))
        })?;
        let config = config::parse(&source, &file, &*self.env).map_err(|e| {
            seen.rejected = Some(text_digest);
            ReloadError { messages: e.messages }
        })?;
        let digest = digest(source.as_bytes(), config.tls.as_ref()).map_err(fail)?;
        if file_changed && (digest == seen.applied || seen.rejected == Some(digest)) {
            return Ok(None);
        }
        // From here on a failure is remembered under the full digest (config + cert + key), so
        // fixing the key file alone is seen as new content.
        seen.rejected = Some(digest);
        // The certificate is validated (and its key matched) before anything is swapped.
        let certified = match (&config.tls, self.bound.tls) {
            (Some(t), true) => Some(server::load_certified_key(t).map_err(fail)?),
            _ => None,
        };
        let old = self.shared.runtime.load_full();
        let runtime = Runtime::build_next(config, &self.shared.metrics, Vec::new(), Some(&old)).map_err(fail)?;
        self.wait_for_new_issuers(&old, &runtime).await.map_err(fail)?;
        Ok(Some(Next { runtime, certified, digest }))
    }

    /// Issuers the old snapshot did not have must have usable keys before the swap.
    async fn wait_for_new_issuers(&self, old: &Runtime, new: &Runtime) -> Result<(), String> {
        let fresh: Vec<_> = new
            .verifier
            .issuers()
            .iter()
            .filter(|n| !old.verifier.issuers().iter().any(|o| Arc::ptr_eq(&o.keys, &n.keys)))
            .collect();
        let deadline = tokio::time::Instant::now() + self.keys_timeout;
        for issuer in fresh {
            while !issuer.keys.is_usable() {
                if tokio::time::Instant::now() >= deadline {
                    return Err(format!(
                        "issuer `{}`: no usable JWKS within {:?}; not applying a config whose tokens would all be refused",
                        issuer.config.name, self.keys_timeout
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    fn restart_needed(&self, c: &Config) -> Vec<String> {
        let b = &self.bound;
        let s = server::ListenerSettings::from(c);
        let mut out = Vec::new();
        if c.listen != b.listen {
            out.push(format!("listen ({} → {})", b.listen, c.listen));
        }
        if c.admin_listen != b.admin_listen {
            out.push(format!("admin_listen ({} → {})", b.admin_listen, c.admin_listen));
        }
        if c.tls.is_some() != b.tls {
            out.push(format!("tls ({} → {})", on_off(b.tls), on_off(c.tls.is_some())));
        }
        if s.header_read_timeout != b.server.header_read_timeout {
            out.push("limits.header_read_timeout".into());
        }
        if s.max_header_bytes != b.server.max_header_bytes {
            out.push("limits.max_header_bytes".into());
        }
        if s.max_connections != b.server.max_connections {
            out.push("limits.max_connections".into());
        }
        if s.grace != b.server.grace {
            out.push("shutdown.grace".into());
        }
        out
    }

    /// Directories whose changes may change the content: the config's and the TLS files'.
    fn watched_dirs(&self) -> BTreeSet<PathBuf> {
        let rt = self.shared.runtime.load();
        let mut files = vec![self.path.clone()];
        if let Some(t) = &rt.config.tls {
            files.push(t.cert_file.clone());
            files.push(t.key_file.clone());
        }
        files.iter().map(|f| parent_dir(f)).collect()
    }

    /// Watch the directories and reload on changes until the returned task is aborted.
    pub fn spawn_watcher(self: &Arc<Self>) -> Result<tokio::task::JoinHandle<()>, String> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Our own reads show up as access events; only changes matter.
            if let Ok(e) = event
                && !matches!(e.kind, EventKind::Access(_))
            {
                let _ = tx.send(());
            }
        })
        .map_err(|e| format!("cannot watch the config: {e}"))?;
        let mut dirs = self.watched_dirs();
        for d in &dirs {
            watcher.watch(d, RecursiveMode::NonRecursive).map_err(|e| format!("cannot watch {}: {e}", d.display()))?;
        }
        let this = self.clone();
        Ok(tokio::spawn(async move {
            while rx.recv().await.is_some() {
                debounce(&mut rx).await;
                let _ = this.reload(Trigger::FileChange).await;
                // The TLS files may have moved to other directories.
                let now = this.watched_dirs();
                if now != dirs {
                    for d in dirs.difference(&now) {
                        let _ = watcher.unwatch(d);
                    }
                    for d in now.difference(&dirs) {
                        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
                            tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory");
                        }
                    }
                    dirs = now;
                }
            }
        }))
    }
}

struct Seen {
    applied: [u8; 32],
    rejected: Option<[u8; 32]>,
}

struct Next {
    runtime: Runtime,
    certified: Option<rustls::sign::CertifiedKey>,
    digest: [u8; 32],
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// Wait until no event arrived for [`DEBOUNCE`] (at most [`DEBOUNCE_MAX`] in total).
async fn debounce(rx: &mut mpsc::UnboundedReceiver<()>) {
    let start = tokio::time::Instant::now();
    while start.elapsed() < DEBOUNCE_MAX {
        match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
            Ok(Some(())) => continue,
            _ => return,
        }
    }
}

fn parent_dir(f: &Path) -> PathBuf {
    match f.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// SHA-256 over everything a reload depends on: the config text and the cert and key bytes.
fn digest(config_text: &[u8], tls: Option<&config::Tls>) -> Result<[u8; 32], String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    // Length-prefixed, so moving bytes between files changes the digest.
    let mut feed = |bytes: &[u8]| {
        ctx.update(&(bytes.len() as u64).to_be_bytes());
        ctx.update(bytes);
    };
    feed(config_text);
    if let Some(t) = tls {
        feed(&read(&t.cert_file)?);
        feed(&read(&t.key_file)?);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}
