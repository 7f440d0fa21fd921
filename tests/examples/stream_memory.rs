//! Memory of the edge under long open streams: starts the real stack (Postgres, control plane,
//! edge) with a fake provider that streams slowly for the whole run, keeps N client streams
//! open, samples the edge's resident memory (`VmRSS` from `/proc/<pid>/status`) every few
//! seconds, and prints a table plus first/last/max RSS and the growth per open stream. Flat
//! memory per open stream over a long stream means nothing accumulates per chunk.
//!
//! `cargo build --workspace && cargo run -p tollgate-e2e --example stream_memory -- \
//!     --minutes 10 --streams 20 [--chunk-ms 50] [--sample-secs 10] [--kind openai|anthropic|gemini|azure_openai]`
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use tollgate_e2e::{Behavior, FakeProvider, GatewayClient, Stack, WireFormat, chat_body};

struct Options {
    minutes: f64,
    streams: usize,
    chunk_ms: u64,
    sample_secs: u64,
    format: WireFormat,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        minutes: 10.0,
        streams: 20,
        chunk_ms: 50,
        sample_secs: 10,
        format: WireFormat::OpenAi,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--minutes" => options.minutes = value()?.parse()?,
            "--streams" => options.streams = value()?.parse()?,
            "--chunk-ms" => options.chunk_ms = value()?.parse()?,
            "--sample-secs" => options.sample_secs = value()?.parse()?,
            "--kind" => {
                let kind = value()?;
                options.format = WireFormat::ALL
                    .into_iter()
                    .find(|format| format.kind() == kind)
                    .with_context(|| format!("unknown kind {kind}"))?;
            }
            other => bail!(
                "unknown argument {other}; use --minutes M --streams N --chunk-ms MS \
                 --sample-secs S --kind K"
            ),
        }
    }
    if options.minutes <= 0.0 || options.streams == 0 || options.chunk_ms == 0 {
        bail!("--minutes, --streams and --chunk-ms must be positive");
    }
    Ok(options)
}

/// Resident set size of `pid` in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("no VmRSS value")?
        .parse()?)
}

#[derive(Default)]
struct Progress {
    open: AtomicUsize,
    chunks: AtomicU64,
    failed: AtomicUsize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let run = Duration::from_secs_f64(options.minutes * 60.0);
    let every = Duration::from_millis(options.chunk_ms);
    // Each stream outlasts the run by a margin; the clients hang up at the end.
    let chunks = usize::try_from((run.as_millis() / u128::from(options.chunk_ms)) * 11 / 10 + 100)?;
    let total_ms = (run.as_millis() * 2 + 120_000).to_string();

    println!(
        "stream_memory: {} streams of {} chunks every {} ms through a {} provider, {:.2} min",
        options.streams,
        chunks,
        options.chunk_ms,
        options.format.kind(),
        options.minutes
    );
    let stack = Stack::start().await;
    let fake = FakeProvider::start().await;
    fake.set_behavior(Behavior::SlowStream { chunks, every });
    let model = "slow-stream";
    stack
        .add_fake_provider(
            &fake,
            options.format,
            "slow",
            model,
            &[],
            &[
                "--idle-timeout-ms",
                "30000",
                "--total-timeout-ms",
                &total_ms,
            ],
        )
        .await;
    let pid = stack.edge.pid().context("the edge is not running")?;
    let baseline = rss_kib(pid)?;
    println!("edge pid {pid}, RSS before any stream: {baseline} KiB");

    let progress = Arc::new(Progress::default());
    let mut clients = Vec::new();
    for index in 0..options.streams {
        let client = GatewayClient::without_request_timeout(&stack.edge.base_url());
        let key = stack.demo.key.clone();
        let progress = Arc::clone(&progress);
        let mut body = chat_body(model, &format!("stream number {index}, please go on"));
        body["stream"] = json!(true);
        clients.push(tokio::spawn(async move {
            let mut stream = match client.open_chat_stream(Some(&key), &body).await {
                Ok(stream) if stream.status == 200 => stream,
                Ok(stream) => {
                    eprintln!("stream {index}: status {}", stream.status);
                    progress.failed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Err(error) => {
                    eprintln!("stream {index}: {error:#}");
                    progress.failed.fetch_add(1, Ordering::SeqCst);
                    return;
                }
            };
            progress.open.fetch_add(1, Ordering::SeqCst);
            loop {
                match stream.next_event().await {
                    Ok(Some(event)) if event.contains("\"error\"") => {
                        eprintln!("stream {index}: error event {event}");
                        break;
                    }
                    Ok(Some(_)) => {
                        progress.chunks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => break,
                    Err(error) => {
                        eprintln!("stream {index}: {error:#}");
                        break;
                    }
                }
            }
            progress.open.fetch_sub(1, Ordering::SeqCst);
            progress.failed.fetch_add(1, Ordering::SeqCst);
        }));
    }

    println!(
        "{:>8} {:>6} {:>12} {:>10} {:>10}",
        "time_s", "open", "chunks", "rss_kib", "delta_kib"
    );
    let started = Instant::now();
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(options.sample_secs));
    loop {
        ticker.tick().await;
        let elapsed = started.elapsed();
        let rss = rss_kib(pid)?;
        samples.push((elapsed.as_secs(), rss));
        println!(
            "{:>8} {:>6} {:>12} {:>10} {:>+10}",
            elapsed.as_secs(),
            progress.open.load(Ordering::SeqCst),
            progress.chunks.load(Ordering::Relaxed),
            rss,
            i128::from(rss) - i128::from(samples[0].1)
        );
        if elapsed >= run {
            break;
        }
    }
    let open_at_end = progress.open.load(Ordering::SeqCst);
    for client in &clients {
        client.abort();
    }

    // The first sample is taken as the streams open; the second has them all running.
    let first = samples.get(1).or(samples.first()).map_or(baseline, |s| s.1);
    let last = samples.last().map_or(baseline, |s| s.1);
    let max = samples.iter().map(|s| s.1).max().unwrap_or(baseline);
    let streams = options.streams as f64;
    println!("---");
    println!("baseline RSS (no stream):     {baseline} KiB");
    println!("first RSS (streams open):     {first} KiB");
    println!("last RSS:                     {last} KiB");
    println!("max RSS:                      {max} KiB");
    println!(
        "per open stream at start:     {:.1} KiB",
        (first as f64 - baseline as f64) / streams
    );
    println!(
        "per open stream at end:       {:.1} KiB",
        (last as f64 - baseline as f64) / streams
    );
    println!(
        "growth per stream over run:   {:.1} KiB ({} chunks relayed, {:.2} KiB per 1000 chunks per stream)",
        (last as f64 - first as f64) / streams,
        progress.chunks.load(Ordering::Relaxed),
        (last as f64 - first as f64)
            / streams
            / (progress.chunks.load(Ordering::Relaxed) as f64 / streams / 1000.0).max(1e-9)
    );
    println!(
        "per-stream memory ratio end/start: {:.3}",
        (last as f64 - baseline as f64) / (first as f64 - baseline as f64).max(1.0)
    );
    println!(
        "streams still open at the end: {open_at_end} of {} ({} ended early or failed)",
        options.streams,
        progress.failed.load(Ordering::SeqCst)
    );
    if open_at_end != options.streams {
        bail!("not every stream stayed open for the whole run");
    }
    Ok(())
}
