//! The local usage spool: an append-only directory of segment files, one JSON event per line.
//!
//! A dedicated writer thread owns the open segment (file I/O never runs on the async runtime).
//! Requests hand events over through a bounded channel and do not wait for the disk. The writer
//! `write()`s events within about a millisecond of their arrival (`linger`: an idle writer wakes
//! at the first event, then gathers for a millisecond before it writes, so under load one
//! wake-up and one `write` serve hundreds of requests instead of one each), so a crashed or
//! killed edge process loses at most that millisecond of events. It `fsync`s at most
//! `fsync_interval` after a write (group commit), so an OS crash or power loss can lose at most
//! that window. A segment is sealed (fsync, rename `.open` → `.jsonl`, fsync of the directory)
//! when it holds `segment_max_events` events or is `segment_max_age` old; only sealed segments
//! are reported, and a segment is deleted only after the control plane acknowledged it.

use super::event::UsageEvent;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

const OPEN_SUFFIX: &str = "open";
const SEALED_SUFFIX: &str = "jsonl";
/// Events taken from the channel per write, so a burst costs one syscall, not one per event.
const MAX_EVENTS_PER_WRITE: usize = 1024;
/// How long the writer gathers events after the first before it writes them. While it sleeps
/// no sender has a waiting writer to wake: the wake-up (a futex call and a context switch,
/// often on the request's own core) is paid once per write, not once per request.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(1);

/// What to do when the spool reaches its size limit (the control plane has been unreachable
/// for long): refuse new requests, or keep serving and alert. Never drop events silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SpoolFullPolicy {
    /// Answer 503 until the spool drains below the limit.
    Reject,
    /// Keep serving and keep spooling past the limit, logging an error on every sealed segment.
    Serve,
}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub full_policy: SpoolFullPolicy,
    pub segment_max_events: usize,
    pub segment_max_age: Duration,
    pub fsync_interval: Duration,
    pub channel_capacity: usize,
    pub linger: Duration,
}

impl SpoolConfig {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            max_bytes: 1024 * 1024 * 1024,
            full_policy: SpoolFullPolicy::Reject,
            segment_max_events: 1000,
            segment_max_age: Duration::from_millis(500),
            fsync_interval: Duration::from_millis(100),
            channel_capacity: 16 * 1024,
            linger: DEFAULT_LINGER,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("usage spool {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// State shared by the writer, the reporter and the request path.
#[derive(Debug)]
pub struct SpoolState {
    dir: PathBuf,
    bytes: AtomicU64,
    max_bytes: u64,
    full_policy: SpoolFullPolicy,
    /// 1 while the writer cannot persist (disk full, I/O error): from that moment the full
    /// policy applies, until a write succeeds again.
    write_failing: Gauge,
    /// Events that could not even be queued for the disk (`--spool-full serve` during a long
    /// write failure): counted and logged, never silent.
    lost_events: Counter,
    /// Woken whenever a segment is sealed, so the reporter ships it without polling delay.
    pub sealed: tokio::sync::Notify,
}

impl SpoolState {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// True when new requests must be refused because their usage could not be kept: the
    /// spool is over its size limit or its disk refuses writes, under `--spool-full reject`.
    pub fn refuses_requests(&self) -> bool {
        self.full_policy == SpoolFullPolicy::Reject
            && (self.bytes() >= self.max_bytes || self.write_failing())
    }

    pub fn write_failing(&self) -> bool {
        self.write_failing.get() != 0
    }

    /// The spool's signals for the edge's metrics registry.
    pub fn gauges(&self) -> (Gauge, Counter) {
        (self.write_failing.clone(), self.lost_events.clone())
    }

    pub fn forget_bytes(&self, bytes: u64) {
        self.bytes
            .fetch_sub(bytes.min(self.bytes()), Ordering::Relaxed);
    }
}

/// The request path's handle: hands an event to the writer without waiting for the disk.
#[derive(Debug, Clone)]
pub struct UsageSink {
    sender: SyncSender<UsageEvent>,
    lost_events: Counter,
}

impl UsageSink {
    /// A sink over any channel; the spool's writer is the one used in production. Benchmarks
    /// use a draining thread instead, to measure the request path without the disk.
    pub fn from_sender(sender: SyncSender<UsageEvent>) -> Self {
        Self {
            sender,
            lost_events: Counter::default(),
        }
    }

    /// Never waits: the queue in front of the writer holds `channel_capacity` events, as many as
    /// the edge serves while a write failure is noticed (from then on `refuses_requests` under
    /// the reject policy). An event that finds it full is counted as lost and logged: a thread
    /// per waiting event is how a full disk used to exhaust the blocking pool.
    pub fn record(&self, event: UsageEvent) {
        let (reason, event) = match self.sender.try_send(event) {
            Ok(()) => return,
            Err(TrySendError::Full(event)) => ("the queue to the spool's disk is full", event),
            Err(TrySendError::Disconnected(event)) => ("the spool writer stopped", event),
        };
        self.lost_events.inc();
        tracing::error!(
            event_id = %event.event_id,
            request_id = %event.request_id,
            reason,
            "usage event lost: it could not be spooled"
        );
    }
}

/// Opens the spool (sealing any segment a previous run left open) and starts the writer thread.
/// The thread ends, sealing its segment, once every `UsageSink` clone is dropped.
pub fn open(
    config: SpoolConfig,
) -> Result<(UsageSink, Arc<SpoolState>, std::thread::JoinHandle<()>), SpoolError> {
    crate::config::state::private_dir(&config.dir).map_err(io_error(&config.dir))?;
    let mut next_seq = 0;
    let mut bytes = 0;
    for entry in fs::read_dir(&config.dir).map_err(io_error(&config.dir))? {
        let entry = entry.map_err(io_error(&config.dir))?;
        let path = entry.path();
        let Some(seq) = segment_seq(&path) else {
            continue;
        };
        next_seq = next_seq.max(seq + 1);
        if path.extension().is_some_and(|ext| ext == OPEN_SUFFIX) {
            let sealed = path.with_extension(SEALED_SUFFIX);
            fs::rename(&path, &sealed).map_err(io_error(&path))?;
        }
        bytes += entry.metadata().map(|meta| meta.len()).unwrap_or(0);
    }
    sync_dir(&config.dir)?;
    let state = Arc::new(SpoolState {
        dir: config.dir.clone(),
        bytes: AtomicU64::new(bytes),
        max_bytes: config.max_bytes,
        full_policy: config.full_policy,
        write_failing: Gauge::default(),
        lost_events: Counter::default(),
        sealed: tokio::sync::Notify::new(),
    });
    let (sender, receiver) = mpsc::sync_channel(config.channel_capacity);
    let writer = Writer {
        config,
        state: Arc::clone(&state),
        next_seq,
        open: None,
    };
    let thread = std::thread::Builder::new()
        .name("usage-spool".to_owned())
        .spawn(move || writer.run(&receiver))
        .map_err(io_error(&state.dir))?;
    if state.bytes() > 0 {
        state.sealed.notify_one();
    }
    let sink = UsageSink {
        sender,
        lost_events: state.lost_events.clone(),
    };
    Ok((sink, state, thread))
}

/// Sealed segments, oldest first: what the reporter ships.
pub fn sealed_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        if path.extension().is_some_and(|ext| ext == SEALED_SUFFIX)
            && let Some(seq) = segment_seq(&path)
        {
            segments.push((seq, path));
        }
    }
    segments.sort();
    Ok(segments)
}

fn segment_seq(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(io_error(dir))
}

struct OpenSegment {
    path: PathBuf,
    file: File,
    /// Bytes of whole records in the file: a failed write is cut back to this.
    len: u64,
    /// A failed write could not be cut back: nothing more is appended to this segment.
    torn: bool,
    events: usize,
    opened: Instant,
    dirty_since: Option<Instant>,
}

struct Writer {
    config: SpoolConfig,
    state: Arc<SpoolState>,
    next_seq: u64,
    open: Option<OpenSegment>,
}

/// Moves what the channel holds into `batch`, up to `MAX_EVENTS_PER_WRITE`, without waiting.
fn drain_into(receiver: &mpsc::Receiver<UsageEvent>, batch: &mut Vec<UsageEvent>) {
    while batch.len() < MAX_EVENTS_PER_WRITE {
        match receiver.try_recv() {
            Ok(event) => batch.push(event),
            Err(_) => break,
        }
    }
}

impl Writer {
    fn run(mut self, receiver: &mpsc::Receiver<UsageEvent>) {
        let tick = (self.config.fsync_interval.min(self.config.segment_max_age) / 2)
            .max(Duration::from_millis(5));
        let mut batch = Vec::with_capacity(MAX_EVENTS_PER_WRITE);
        loop {
            match receiver.recv_timeout(tick) {
                Ok(event) => {
                    batch.push(event);
                    drain_into(receiver, &mut batch);
                    if batch.len() < MAX_EVENTS_PER_WRITE && !self.config.linger.is_zero() {
                        std::thread::sleep(self.config.linger);
                        drain_into(receiver, &mut batch);
                    }
                    self.write_until_done(&mut batch);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.retry_until_done(|writer| writer.seal());
                    return;
                }
            }
            self.retry_until_done(|writer| writer.maintain());
        }
    }

    /// Disk errors (full disk, EIO) are retried, never turned into dropped events: the channel
    /// fills, requests feel backpressure, and the error is logged until the disk recovers.
    fn write_until_done(&mut self, batch: &mut Vec<UsageEvent>) {
        let mut lines = Vec::with_capacity(batch.len() * 512);
        let mut count = 0;
        for event in batch.drain(..) {
            match serde_json::to_vec(&event) {
                Ok(json) => {
                    lines.extend_from_slice(&json);
                    lines.push(b'\n');
                    count += 1;
                }
                Err(err) => {
                    tracing::error!(error = %err, event_id = %event.event_id, "cannot encode usage event");
                    continue;
                }
            }
            // Segments never exceed the limit, so a batch never exceeds what ingest accepts.
            let in_segment = self.open.as_ref().map_or(0, |segment| segment.events);
            if in_segment + count >= self.config.segment_max_events {
                self.retry_until_done(|writer| writer.append(&lines, count));
                self.retry_until_done(|writer| writer.seal());
                lines.clear();
                count = 0;
            }
        }
        if count > 0 {
            self.retry_until_done(|writer| writer.append(&lines, count));
        }
    }

    /// A failing step marks the spool unwritable at once (so the full policy applies to new
    /// requests) and is retried with backoff, keeping its events, until the disk takes them.
    fn retry_until_done(&mut self, mut step: impl FnMut(&mut Self) -> Result<(), SpoolError>) {
        let mut delay = Duration::from_millis(10);
        let mut failures: u64 = 0;
        while let Err(err) = step(self) {
            if failures == 0 {
                self.state.write_failing.set(1);
            }
            // Once at first, then about every minute: a full disk must not fill the log too.
            if failures.is_power_of_two() || failures.is_multiple_of(60) {
                tracing::error!(error = %err, failures = failures + 1, policy = ?self.state.full_policy, "usage spool cannot write; retrying until the disk takes it");
            }
            failures += 1;
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
        if failures > 0 {
            self.state.write_failing.set(0);
            tracing::warn!(failures, "usage spool writes again");
        }
    }

    fn append(&mut self, lines: &[u8], count: usize) -> Result<(), SpoolError> {
        if lines.is_empty() {
            return Ok(());
        }
        if self.open.as_ref().is_some_and(|segment| segment.torn) {
            self.seal()?;
        }
        if self.open.is_none() {
            self.open = Some(self.open_segment()?);
        }
        let Some(segment) = self.open.as_mut() else {
            return Ok(());
        };
        if let Err(err) = segment.file.write_all(lines) {
            // Part of the lines may have reached the file: cut it back, so a retry never
            // leaves a torn record in front of the whole one.
            if let Err(cut) = segment.file.set_len(segment.len) {
                tracing::error!(error = %cut, path = %segment.path.display(), "cannot cut a failed spool write back; the segment is sealed and its torn tail quarantined when shipped");
                segment.torn = true;
            }
            return Err(io_error(&segment.path)(err));
        }
        segment.len += lines.len() as u64;
        segment.events += count;
        segment.dirty_since.get_or_insert_with(Instant::now);
        self.state
            .bytes
            .fetch_add(lines.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn open_segment(&mut self) -> Result<OpenSegment, SpoolError> {
        let path = self
            .config
            .dir
            .join(format!("{:020}.{OPEN_SUFFIX}", self.next_seq));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(&path))?;
        self.next_seq += 1;
        Ok(OpenSegment {
            path,
            file,
            len: 0,
            torn: false,
            events: 0,
            opened: Instant::now(),
            dirty_since: None,
        })
    }

    fn maintain(&mut self) -> Result<(), SpoolError> {
        let Some(segment) = self.open.as_mut() else {
            return Ok(());
        };
        if segment.events >= self.config.segment_max_events
            || (segment.events > 0 && segment.opened.elapsed() >= self.config.segment_max_age)
        {
            return self.seal();
        }
        if segment
            .dirty_since
            .is_some_and(|since| since.elapsed() >= self.config.fsync_interval)
        {
            segment.file.sync_data().map_err(io_error(&segment.path))?;
            segment.dirty_since = None;
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<(), SpoolError> {
        let Some(segment) = self.open.as_mut() else {
            return Ok(());
        };
        segment.file.sync_all().map_err(io_error(&segment.path))?;
        if segment.events == 0 {
            fs::remove_file(&segment.path).map_err(io_error(&segment.path))?;
        } else {
            let sealed = segment.path.with_extension(SEALED_SUFFIX);
            fs::rename(&segment.path, &sealed).map_err(io_error(&segment.path))?;
        }
        sync_dir(&self.config.dir)?;
        self.open = None;
        self.state.sealed.notify_one();
        if self.state.bytes() >= self.state.max_bytes {
            tracing::error!(
                bytes = self.state.bytes(),
                max_bytes = self.state.max_bytes,
                policy = ?self.state.full_policy,
                "usage spool is full: the control plane has not acknowledged usage for a while"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::usage::event::{UsageSource, UsageStatus};

    pub(crate) fn event(id: &str) -> UsageEvent {
        UsageEvent {
            event_id: id.to_owned(),
            request_id: format!("req_{id}"),
            event_time_unix_ms: 1,
            org_id: "o".into(),
            team_id: "t".into(),
            project_id: "p".into(),
            user_id: None,
            key_id: "k".into(),
            requested_model: "m".into(),
            model: "m".into(),
            provider: "mock".into(),
            input_tokens: 1,
            cached_input_tokens: 0,
            output_tokens: 2,
            cost_micros: Some(3),
            price_version: Some(1),
            saved_cost_micros: 0,
            latency_ms: 4,
            ttft_ms: None,
            status: UsageStatus::Ok,
            http_status: 200,
            cache_hit: false,
            fallback_level: 0,
            variant: None,
            edge_id: "e".into(),
            config_version: 1,
            stream: false,
            usage_source: UsageSource::Provider,
        }
    }

    fn read_all(dir: &Path) -> Vec<UsageEvent> {
        sealed_segments(dir)
            .unwrap()
            .iter()
            .flat_map(|(_, path)| {
                fs::read_to_string(path)
                    .unwrap()
                    .lines()
                    .map(|line| serde_json::from_str(line).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn events_are_sealed_into_segments_in_order_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SpoolConfig::new(dir.path().to_owned());
        config.segment_max_events = 3;
        let (sink, state, thread) = open(config.clone()).unwrap();
        for i in 0..7 {
            sink.record(event(&i.to_string()));
        }
        drop(sink);
        thread.join().unwrap();
        let events = read_all(dir.path());
        let ids: Vec<_> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["0", "1", "2", "3", "4", "5", "6"]);
        assert!(sealed_segments(dir.path()).unwrap().len() >= 3);
        assert!(state.bytes() > 0);

        // A restart continues the sequence and counts what is already on disk.
        let (sink, state, thread) = open(config).unwrap();
        sink.record(event("7"));
        drop(sink);
        thread.join().unwrap();
        assert_eq!(read_all(dir.path()).last().unwrap().event_id, "7");
        assert!(state.bytes() >= fs::read_dir(dir.path()).unwrap().count() as u64);
    }

    /// Before: segments were 0644 and an existing spool directory kept its mode.
    #[test]
    fn the_spool_directory_and_its_segments_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("spool");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let (sink, _state, thread) = open(SpoolConfig::new(dir.clone())).unwrap();
        sink.record(event("private"));
        drop(sink);
        thread.join().unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let segments = sealed_segments(&dir).unwrap();
        assert_eq!(mode(&segments[0].1), 0o600);
    }

    #[test]
    fn a_segment_left_open_by_a_crash_is_sealed_on_start() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_string(&event("crashed")).unwrap();
        fs::write(
            dir.path().join("00000000000000000004.open"),
            format!("{line}\n"),
        )
        .unwrap();
        let (sink, _state, thread) = open(SpoolConfig::new(dir.path().to_owned())).unwrap();
        drop(sink);
        thread.join().unwrap();
        assert_eq!(read_all(dir.path())[0].event_id, "crashed");
    }

    #[test]
    fn reject_policy_refuses_requests_once_the_limit_is_reached() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SpoolConfig::new(dir.path().to_owned());
        config.max_bytes = 10;
        let (sink, state, thread) = open(config.clone()).unwrap();
        assert!(!state.refuses_requests());
        sink.record(event("big"));
        drop(sink);
        thread.join().unwrap();
        assert!(state.refuses_requests());
        state.forget_bytes(state.bytes());
        assert!(!state.refuses_requests());

        config.full_policy = SpoolFullPolicy::Serve;
        let (_sink, state, _thread) = open(config).unwrap();
        assert!(state.bytes() >= 10 && !state.refuses_requests());
    }

    #[test]
    fn events_past_the_queue_are_counted_as_lost_without_a_thread_each() {
        let (sender, receiver) = mpsc::sync_channel(2);
        let sink = UsageSink::from_sender(sender);
        for i in 0..5 {
            sink.record(event(&i.to_string()));
        }
        assert_eq!(sink.lost_events.get(), 3);
        drop(receiver);
        sink.record(event("after"));
        assert_eq!(sink.lost_events.get(), 4);
    }
}
