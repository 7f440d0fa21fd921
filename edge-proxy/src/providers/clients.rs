//! Pooled HTTP clients, one per distinct connect timeout: reqwest sets the connect timeout per
//! client, and models may each configure their own. Kept across config swaps so connection
//! pools survive them; built at compile time, never on the request path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct HttpClients {
    by_connect_timeout: Arc<Mutex<HashMap<Duration, reqwest::Client>>>,
}

impl HttpClients {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_connect_timeout(
        &self,
        connect: Duration,
    ) -> Result<reqwest::Client, reqwest::Error> {
        let mut clients = self
            .by_connect_timeout
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = clients.get(&connect) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(connect)
            // Never follow redirects: reqwest strips only `Authorization` on a cross-host
            // redirect, so `api-key`, `x-api-key` and `x-goog-api-key` would travel to the new
            // host, and a redirect could reach addresses the base-URL policy refuses. A 3xx is
            // an upstream error instead.
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(std::sync::Arc::new(super::resolver::GuardedResolver))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        clients.insert(connect, client.clone());
        Ok(client)
    }
}
