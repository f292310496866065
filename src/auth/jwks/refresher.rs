//! Keeping a key set fresh: one background task per issuer that retries with capped, jittered
//! exponential backoff until the first success and then refreshes every `refresh_interval`. The
//! [`Refresher`] handle stops it when the last config snapshot using the cache is dropped.

use std::sync::Arc;
use std::time::Duration;

use super::cache::IssuerKeys;

/// Aborts an issuer's JWKS refresher when dropped. Shared (`Arc`) by every config snapshot that
/// uses the same key cache, so a reload that keeps the issuer keeps its refresher running.
pub struct Refresher(tokio::task::AbortHandle);

impl Drop for Refresher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl IssuerKeys {
    /// Keep the set fresh: retry with capped exponential backoff until the first success, then
    /// refresh every `refresh_interval` (backing off again while fetches fail). Runs until the
    /// cache is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                let Some(this) = weak.upgrade() else { return };
                let result = this.refresh().await;
                let wait = match result {
                    Ok(()) => {
                        backoff = Duration::from_millis(250);
                        this.settings.refresh_interval
                    }
                    Err(_) => {
                        let wait = jitter(backoff).min(this.settings.refresh_interval);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        wait
                    }
                };
                drop(this);
                tokio::time::sleep(wait).await;
            }
        })
    }
}

impl Refresher {
    /// Start the refresher for `keys`.
    pub fn start(keys: &Arc<IssuerKeys>) -> Refresher {
        Refresher(keys.spawn_refresher().abort_handle())
    }
}

fn jitter(d: Duration) -> Duration {
    let factor: f64 = 0.75 + rand::random::<f64>() * 0.5;
    d.mul_f64(factor)
}
