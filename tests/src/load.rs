//! Concurrent client load against several edges at once: paced workers per edge that send the
//! same request until a deadline, keeping every reply for the test to count and inspect.

use std::time::Duration;

use serde_json::Value;
use tokio::time::{Instant, MissedTickBehavior};

use crate::gateway_client::{GatewayClient, HttpReply};

/// How hard and how long to push.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    /// Concurrent clients per edge.
    pub workers_per_edge: usize,
    /// Each worker starts a request at most this often (a slow reply delays the next one).
    pub pace: Duration,
    /// Workers start no request after this long; requests in flight then are awaited.
    pub duration: Duration,
}

/// One request a worker sent.
#[derive(Debug, Clone)]
pub struct LoadReply {
    /// Index of the edge (in the slice given to [`run_load`]) the request went to.
    pub edge: usize,
    /// The reply, or the transport error.
    pub result: Result<HttpReply, String>,
}

impl LoadReply {
    pub fn status(&self) -> Option<u16> {
        self.result.as_ref().ok().map(|reply| reply.status)
    }
}

/// Every reply of one [`run_load`].
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub replies: Vec<LoadReply>,
}

impl LoadReport {
    /// Replies with `status`.
    pub fn with_status(&self, status: u16) -> impl Iterator<Item = &HttpReply> {
        self.replies
            .iter()
            .filter_map(|reply| reply.result.as_ref().ok())
            .filter(move |reply| reply.status == status)
    }

    /// Number of replies with `status`.
    pub fn count(&self, status: u16) -> usize {
        self.with_status(status).count()
    }

    /// Number of replies with `status` from edge `edge`.
    pub fn count_on_edge(&self, edge: usize, status: u16) -> usize {
        self.replies
            .iter()
            .filter(|reply| reply.edge == edge && reply.status() == Some(status))
            .count()
    }

    /// Transport errors (no HTTP reply at all).
    pub fn transport_errors(&self) -> Vec<&str> {
        self.replies
            .iter()
            .filter_map(|reply| reply.result.as_ref().err().map(String::as_str))
            .collect()
    }

    /// `status -> count`, for failure messages.
    pub fn status_histogram(&self) -> std::collections::BTreeMap<u16, usize> {
        let mut histogram = std::collections::BTreeMap::new();
        for status in self.replies.iter().filter_map(LoadReply::status) {
            *histogram.entry(status).or_insert(0) += 1;
        }
        histogram
    }

    /// Panics (showing a sample) if any request failed below HTTP or got a status outside
    /// `allowed`.
    #[track_caller]
    pub fn assert_statuses_within(&self, allowed: &[u16]) {
        let errors = self.transport_errors();
        assert!(
            errors.is_empty(),
            "{} requests failed below HTTP, e.g. {:?}",
            errors.len(),
            errors.first()
        );
        if let Some(unexpected) = self
            .replies
            .iter()
            .filter_map(|reply| reply.result.as_ref().ok())
            .find(|reply| !allowed.contains(&reply.status))
        {
            panic!(
                "status {} outside {allowed:?} (histogram {:?}): {}",
                unexpected.status,
                self.status_histogram(),
                unexpected.body
            );
        }
    }
}

/// Runs `plan.workers_per_edge` workers against each of `edges`, each sending `body` with
/// `key` every `plan.pace` until `plan.duration` has passed, and returns every reply.
pub async fn run_load(
    edges: &[GatewayClient],
    key: &str,
    body: &Value,
    plan: LoadPlan,
) -> LoadReport {
    let deadline = Instant::now() + plan.duration;
    let mut workers = Vec::new();
    for (edge, client) in edges.iter().enumerate() {
        for _ in 0..plan.workers_per_edge {
            let client = client.clone();
            let key = key.to_owned();
            let body = body.clone();
            workers.push(tokio::spawn(async move {
                let mut replies = Vec::new();
                let mut pace = tokio::time::interval(plan.pace);
                pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    pace.tick().await;
                    if Instant::now() >= deadline {
                        break;
                    }
                    let result = client
                        .chat(Some(&key), &body)
                        .await
                        .map_err(|error| format!("{error:#}"));
                    replies.push(LoadReply { edge, result });
                }
                replies
            }));
        }
    }
    let mut report = LoadReport::default();
    for worker in workers {
        report
            .replies
            .extend(worker.await.expect("a load worker panicked"));
    }
    report
}
