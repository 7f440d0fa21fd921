//! Upstream deadlines by phase. A slow provider fails differently in each phase (cannot
//! connect, thinks too long, stalls mid-stream, runs too long overall), and operators tune
//! each separately per model; the client learns which one fired.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// TCP + TLS connection to the upstream.
    Connect,
    /// Request sent → first streamed chunk. Streams only: a non-streaming response arrives all
    /// at once, so `Total` bounds it.
    FirstToken,
    /// Silence between two streamed chunks.
    Idle,
    /// The whole call, body included.
    Total,
}

impl TimeoutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::FirstToken => "first_token",
            Self::Idle => "idle",
            Self::Total => "total",
        }
    }

    /// What the gateway was waiting for, for the error message.
    pub fn awaited(self) -> &'static str {
        match self {
            Self::Connect => "connection",
            Self::FirstToken => "first token",
            Self::Idle => "next chunk",
            Self::Total => "complete response",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadlines {
    pub connect: Duration,
    pub first_token: Duration,
    pub idle: Duration,
    pub total: Duration,
}

impl Deadlines {
    pub const DEFAULT_CONNECT: Duration = Duration::from_secs(10);
    pub const DEFAULT_FIRST_TOKEN: Duration = Duration::from_secs(60);
    pub const DEFAULT_IDLE: Duration = Duration::from_secs(60);
    pub const DEFAULT_TOTAL: Duration = Duration::from_secs(600);

    /// A model's configured deadlines in milliseconds, 0 meaning "default": for `total` the
    /// provider's request timeout, then the edge default; for the others the edge default.
    pub fn from_millis(
        connect_ms: u32,
        first_token_ms: u32,
        idle_ms: u32,
        total_ms: u32,
        provider_total_ms: u32,
    ) -> Self {
        let or = |ms: u32, default: Duration| match ms {
            0 => default,
            ms => Duration::from_millis(u64::from(ms)),
        };
        Self {
            connect: or(connect_ms, Self::DEFAULT_CONNECT),
            first_token: or(first_token_ms, Self::DEFAULT_FIRST_TOKEN),
            idle: or(idle_ms, Self::DEFAULT_IDLE),
            total: or(total_ms, or(provider_total_ms, Self::DEFAULT_TOTAL)),
        }
    }

    pub fn of(&self, phase: TimeoutPhase) -> Duration {
        match phase {
            TimeoutPhase::Connect => self.connect,
            TimeoutPhase::FirstToken => self.first_token,
            TimeoutPhase::Idle => self.idle,
            TimeoutPhase::Total => self.total,
        }
    }
}

impl Default for Deadlines {
    fn default() -> Self {
        Self::from_millis(0, 0, 0, 0, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_default_and_the_model_total_beats_the_provider_total() {
        let defaults = Deadlines::default();
        assert_eq!(defaults.total, Deadlines::DEFAULT_TOTAL);
        let provider_only = Deadlines::from_millis(0, 0, 0, 0, 5_000);
        assert_eq!(provider_only.total, Duration::from_secs(5));
        let model = Deadlines::from_millis(100, 200, 300, 400, 5_000);
        assert_eq!(
            [model.connect, model.first_token, model.idle, model.total],
            [100, 200, 300, 400].map(Duration::from_millis)
        );
        assert_eq!(model.of(TimeoutPhase::Idle), Duration::from_millis(300));
    }
}
