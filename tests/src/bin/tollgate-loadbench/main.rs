//! `tollgate-loadbench`: the edge against a bare hyper pass-through, in one run, on the same
//! core, in front of the same upstream stub.
//!
//! ```sh
//! cargo build --release --workspace
//! target/release/tollgate-loadbench                 # or: cargo run --release -p tollgate-e2e --bin tollgate-loadbench
//! target/release/tollgate-loadbench --seconds 20 --connections 64 --rate 500
//! ```
//!
//! It starts an upstream stub (a fixed OpenAI reply: JSON, or a 21-event SSE stream), then the
//! bare pass-through on `--proxy-cpus`, measures it, stops it, and then a real stack (a fresh
//! Postgres database, the control plane with the demo data plus a priced model on the stub and
//! org and key limits, so auth, token counting, leases, the usage spool and reporting all run)
//! with the edge on `--proxy-cpus`, and measures that the same way. The load generator, the stub
//! and the control plane share `--load-cpus`. Postgres (the machine's) floats.
//!
//! Phases, per proxy: a closed loop of `--connections` keep-alive connections (throughput and
//! CPU per request from the proxy's own /proc counters), an open loop at `--rate` requests per
//! second (latency percentiles counted from each request's due time), the same closed loop with
//! streaming (streams/s, latency to the last and the first byte), and the proxy's resident
//! memory when ready, idle after its first requests, and at its peak. Every figure is printed with its
//! ratio to the pass-through's.
//!
//! Needs Postgres as the tests do (`TOLLGATE_TEST_DATABASE_URL`), `taskset` (util-linux), and
//! the workspace binaries built with the same profile (they are found next to this one).

#![allow(clippy::print_stdout)]

mod drive;
mod passthrough;
mod process_stats;
mod stub;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use drive::{Measured, Target};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tollgate_e2e::process::ManagedProcess;
use tollgate_e2e::{ControlPlane, Edge, TestDb, eventually};

#[derive(Parser)]
#[command(
    name = "tollgate-loadbench",
    about = "The edge against a bare pass-through"
)]
struct Cli {
    #[command(subcommand)]
    role: Option<Role>,
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of load before each closed-loop phase, not counted.
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// Keep-alive connections of the closed-loop phases.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds each proxy sits idle (after one request) before its idle memory is read.
    #[arg(long, default_value_t = 1)]
    idle_seconds: u64,
    /// Requests per second of the open-loop phase.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// CPUs (a `taskset -c` list) of the proxy under test.
    #[arg(long, default_value = "0")]
    proxy_cpus: String,
    /// CPUs of everything else: this load generator, the stub, the control plane.
    #[arg(long, default_value = "1")]
    load_cpus: String,
}

#[derive(Subcommand)]
enum Role {
    /// The bare pass-through (started by the benchmark itself).
    #[command(hide = true)]
    Passthrough {
        #[arg(long)]
        upstream: String,
        #[arg(long)]
        address_file: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Role::Passthrough {
        upstream,
        address_file,
    }) = &cli.role
    {
        return runtime()?.block_on(passthrough::serve(upstream.clone(), address_file));
    }
    // Before the runtime exists, so every thread it starts inherits the CPUs.
    pin(std::process::id(), &cli.load_cpus)?;
    runtime()?.block_on(bench(&cli))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Confines every thread of process `pid` to `cpus`.
fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} {pid} failed: {status}");
    }
    Ok(())
}

const REQUEST: &str = r#"{"model":"bench","messages":[{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64}"#;
const STREAM_REQUEST: &str = r#"{"model":"bench","messages":[{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":64,"stream":true}"#;

async fn bench(cli: &Cli) -> anyhow::Result<()> {
    let upstream = stub::start().await?;
    println!(
        "upstream stub on {upstream}; proxies on CPUs {}, load on CPUs {}; {} s per phase, {} connections, open loop at {} req/s",
        cli.proxy_cpus, cli.load_cpus, cli.seconds, cli.connections, cli.rate
    );

    let bare = {
        let passthrough = Passthrough::start(upstream, &cli.proxy_cpus).await?;
        let pid = passthrough
            .process
            .pid()
            .context("pass-through not running")?;
        measure(cli, pid, passthrough.address, None).await?
    };
    println!("pass-through measured");

    let db = TestDb::create().await;
    let cp = ControlPlane::start(&db).await;
    pin(
        cp.pid().context("control plane not running")?,
        &cli.load_cpus,
    )?;
    let demo = cp.seed_demo().await;
    configure_bench_model(&cp, &demo, upstream).await;
    let mut edge = Edge::connect_on_cpus(&cp, &demo.join_token, &[], &cli.proxy_cpus).await;
    edge.wait_ready().await;
    let client = edge.client();
    eventually(Duration::from_secs(20), async || {
        let ids = client.model_ids(&demo.key).await?;
        anyhow::ensure!(ids.iter().any(|id| id == "bench"), "bench not listed yet");
        Ok::<_, anyhow::Error>(())
    })
    .await;
    let address: SocketAddr = format!("127.0.0.1:{}", edge.port()).parse()?;
    let pid = edge.pid().context("edge not running")?;
    let gateway = measure(cli, pid, address, Some(format!("Bearer {}", demo.key))).await?;
    edge.assert_running();

    print_table(cli, &bare, &gateway);
    Ok(())
}

/// The bare pass-through, a child process of this benchmark (killed on drop).
struct Passthrough {
    process: ManagedProcess,
    address: SocketAddr,
    /// Holds its logs; declared after `process`, so it outlives it.
    _work_dir: tempfile::TempDir,
}

impl Passthrough {
    async fn start(upstream: SocketAddr, cpus: &str) -> anyhow::Result<Passthrough> {
        let work_dir = tempfile::tempdir()?;
        let address_file = work_dir.path().join("address");
        let args = [
            "passthrough",
            "--upstream",
            &upstream.to_string(),
            "--address-file",
        ]
        .into_iter()
        .map(OsString::from)
        .chain([address_file.clone().into_os_string()])
        .collect();
        let mut process = ManagedProcess::new(
            "passthrough",
            std::env::current_exe()?,
            args,
            Vec::new(),
            work_dir.path(),
        );
        process.run_on_cpus(cpus);
        process.start();
        let address = eventually(Duration::from_secs(10), async || {
            process.check_running().map_err(anyhow::Error::msg)?;
            let text = std::fs::read_to_string(&address_file)?;
            Ok::<SocketAddr, anyhow::Error>(text.trim().parse()?)
        })
        .await;
        Ok(Passthrough {
            process,
            address,
            _work_dir: work_dir,
        })
    }
}

/// A priced model `bench` on the stub, and limits on the demo org, team and key that never bind
/// but are enforced (leases, reservations, settlement) on every request.
async fn configure_bench_model(
    cp: &ControlPlane,
    demo: &tollgate_e2e::SeedDemo,
    upstream: SocketAddr,
) {
    let base_url = format!("http://{upstream}/v1");
    cp.ctl_json(&[
        "providers",
        "create",
        "bench-upstream",
        "--kind",
        "openai",
        "--base-url",
        &base_url,
        "--api-key",
        "sk-bench",
    ])
    .await;
    cp.ctl_json(&[
        "models",
        "create",
        "bench",
        "--provider",
        "bench-upstream",
        "--upstream-model",
        "gpt-4o-mini",
        "--input-price",
        "0.15",
        "--output-price",
        "0.60",
    ])
    .await;
    // Limits at three levels that never bind but are reserved, leased and settled on every
    // request (the demo team's own 1000 requests a minute would bind: raised out of the way).
    let never_binding = [
        "--rpm",
        "1000000000",
        "--tpm",
        "1000000000000",
        "--budget-usd-month",
        "100000000",
        "--max-concurrent",
        "100000",
    ];
    let scopes: [&[&str]; 3] = [
        &["--org", &demo.org],
        &["--org", &demo.org, "--team", &demo.team],
        &["--key", &demo.key_id],
    ];
    for scope in scopes {
        let mut args = vec!["limits", "set"];
        args.extend_from_slice(scope);
        args.extend_from_slice(&never_binding);
        cp.ctl_json(&args).await;
    }
}

struct Figures {
    closed: Measured,
    cpu_per_request: Duration,
    open: Measured,
    streams: Measured,
    cpu_per_stream: Duration,
    /// Ready, before any request.
    start_rss: u64,
    /// After a request of each kind, then `--idle-seconds` of nothing.
    idle_rss: u64,
    peak_rss: u64,
}

async fn measure(
    cli: &Cli,
    pid: u32,
    address: SocketAddr,
    authorization: Option<String>,
) -> anyhow::Result<Figures> {
    let target = |body: &'static str| Target {
        address,
        authorization: authorization.clone(),
        path: "/v1/chat/completions",
        body: Bytes::from_static(body.as_bytes()),
    };
    let json = target(REQUEST);
    let stream = target(STREAM_REQUEST);
    let (start_rss, _) = process_stats::memory(pid)?;
    let reply = drive::once(&json).await.map_err(anyhow::Error::msg)?;
    if !reply.contains("chat.completion") {
        bail!("unexpected reply: {reply}");
    }
    let reply = drive::once(&stream).await.map_err(anyhow::Error::msg)?;
    if reply.matches("data: ").count() < stub::STREAM_EVENTS || !reply.contains("[DONE]") {
        bail!("unexpected stream: {reply}");
    }
    tokio::time::sleep(Duration::from_secs(cli.idle_seconds)).await;
    let (idle_rss, _) = process_stats::memory(pid)?;

    let seconds = Duration::from_secs(cli.seconds);
    let warmup = Duration::from_secs(cli.warmup_seconds);
    let (closed, cpu_per_request) = closed_loop_with_cpu(&json, cli, pid, warmup, seconds).await?;
    let open = drive::open_loop(&json, cli.rate, seconds).await;
    let (streams, cpu_per_stream) =
        closed_loop_with_cpu(&stream, cli, pid, warmup, seconds).await?;
    let (_, peak_rss) = process_stats::memory(pid)?;
    for (phase, measured) in [
        ("closed loop", &closed),
        ("open loop", &open),
        ("streams", &streams),
    ] {
        if measured.errors > 0 {
            println!(
                "warning: {phase}: {} errors, e.g. {}",
                measured.errors,
                measured.first_error.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(Figures {
        closed,
        cpu_per_request,
        open,
        streams,
        cpu_per_stream,
        start_rss,
        idle_rss,
        peak_rss,
    })
}

async fn closed_loop_with_cpu(
    target: &Target,
    cli: &Cli,
    pid: u32,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<(Measured, Duration)> {
    // Warm-up: connections opened, caches and leases filled; not counted.
    drive::closed_loop(target, cli.connections, warmup).await;
    let before = process_stats::cpu_time(pid)?;
    let measured = drive::closed_loop(target, cli.connections, duration).await;
    let used = process_stats::cpu_time(pid)?.saturating_sub(before);
    let per_request = used / u32::try_from(measured.completed.max(1)).unwrap_or(u32::MAX);
    Ok((measured, per_request))
}

fn print_table(cli: &Cli, bare: &Figures, edge: &Figures) {
    let micros = |duration: Duration| duration.as_secs_f64() * 1e6;
    let millis = |duration: Duration| duration.as_secs_f64() * 1e3;
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let rows: Vec<(String, f64, f64, usize)> = vec![
        (
            format!("closed loop, {} connections, req/s", cli.connections),
            bare.closed.per_second(),
            edge.closed.per_second(),
            0,
        ),
        (
            "CPU per request, µs".into(),
            micros(bare.cpu_per_request),
            micros(edge.cpu_per_request),
            1,
        ),
        (
            format!("open loop {} req/s, p50 ms", cli.rate),
            millis(bare.open.latency(0.5)),
            millis(edge.open.latency(0.5)),
            2,
        ),
        (
            format!("open loop {} req/s, p99 ms", cli.rate),
            millis(bare.open.latency(0.99)),
            millis(edge.open.latency(0.99)),
            2,
        ),
        (
            format!("streaming, {} connections, streams/s", cli.connections),
            bare.streams.per_second(),
            edge.streams.per_second(),
            0,
        ),
        (
            "streaming, p50 ms (whole stream)".into(),
            millis(bare.streams.latency(0.5)),
            millis(edge.streams.latency(0.5)),
            2,
        ),
        (
            "streaming, p99 ms (whole stream)".into(),
            millis(bare.streams.latency(0.99)),
            millis(edge.streams.latency(0.99)),
            2,
        ),
        (
            "streaming, p50 ms to first byte".into(),
            millis(bare.streams.first_byte(0.5)),
            millis(edge.streams.first_byte(0.5)),
            2,
        ),
        (
            "CPU per stream, µs".into(),
            micros(bare.cpu_per_stream),
            micros(edge.cpu_per_stream),
            1,
        ),
        (
            "RSS at start (ready, no request yet), MiB".into(),
            mib(bare.start_rss),
            mib(edge.start_rss),
            1,
        ),
        (
            "idle RSS (after the first requests), MiB".into(),
            mib(bare.idle_rss),
            mib(edge.idle_rss),
            1,
        ),
        (
            "peak RSS, MiB".into(),
            mib(bare.peak_rss),
            mib(edge.peak_rss),
            1,
        ),
    ];
    println!();
    println!("| | bare pass-through | edge | edge / pass-through |");
    println!("|---|---|---|---|");
    for (name, bare, edge, decimals) in rows {
        let ratio = edge / bare.max(1e-9);
        println!("| {name} | {bare:.decimals$} | {edge:.decimals$} | {ratio:.2}x |");
    }
    let errors = [&edge.closed, &edge.open, &edge.streams]
        .iter()
        .map(|measured| measured.errors)
        .sum::<usize>();
    println!(
        "\nedge: {} requests, {} streams, {errors} errors",
        edge.closed.completed + edge.open.completed,
        edge.streams.completed
    );
}
