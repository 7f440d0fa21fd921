//! Load generation over raw HTTP/1.1 keep-alive connections (hyper's client connection, no
//! pool, no redirects, nothing between the socket and the measurement): closed loops of a fixed
//! number of connections, and an open loop at a fixed rate, whose requests go out on schedule
//! whatever the earlier ones are doing, so a stall shows up as latency rather than as fewer
//! requests.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Where requests go and what they are.
#[derive(Clone)]
pub struct Target {
    pub address: SocketAddr,
    pub authorization: Option<String>,
    pub path: &'static str,
    pub body: Bytes,
}

/// One exchange as the client saw it.
#[derive(Clone, Copy)]
struct Sample {
    total: Duration,
    first_byte: Duration,
}

/// What a phase measured.
pub struct Measured {
    pub completed: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    latencies: Vec<Duration>,
    first_bytes: Vec<Duration>,
}

impl Measured {
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64()
    }

    /// The `quantile` (0..=1) latency of completed exchanges.
    pub fn latency(&self, quantile: f64) -> Duration {
        percentile(&self.latencies, quantile)
    }

    /// The `quantile` time to the first body byte.
    pub fn first_byte(&self, quantile: f64) -> Duration {
        percentile(&self.first_bytes, quantile)
    }

    fn from_samples(samples: Vec<Result<Sample, String>>, elapsed: Duration) -> Self {
        let mut measured = Measured {
            completed: 0,
            errors: 0,
            first_error: None,
            elapsed,
            latencies: Vec::with_capacity(samples.len()),
            first_bytes: Vec::with_capacity(samples.len()),
        };
        for sample in samples {
            match sample {
                Ok(sample) => {
                    measured.completed += 1;
                    measured.latencies.push(sample.total);
                    measured.first_bytes.push(sample.first_byte);
                }
                Err(error) => {
                    measured.errors += 1;
                    measured.first_error.get_or_insert(error);
                }
            }
        }
        measured.latencies.sort_unstable();
        measured.first_bytes.sort_unstable();
        measured
    }
}

fn percentile(sorted: &[Duration], quantile: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * quantile).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(address: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|error| format!("connect: {error}"))?;
    stream
        .set_nodelay(true)
        .map_err(|error| format!("nodelay: {error}"))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| format!("handshake: {error}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

fn request(target: &Target) -> hyper::Request<Full<Bytes>> {
    let mut builder = hyper::Request::post(target.path)
        .header(http::header::HOST, target.address.to_string())
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(authorization) = &target.authorization {
        builder = builder.header(http::header::AUTHORIZATION, authorization.as_str());
    }
    builder
        .body(Full::new(target.body.clone()))
        .unwrap_or_else(|_| hyper::Request::new(Full::new(Bytes::new())))
}

/// Sends `target` on `sender` once it can take a request; the body is the caller's to read.
async fn send(
    sender: &mut Sender,
    target: &Target,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    sender
        .ready()
        .await
        .map_err(|error| format!("connection: {error}"))?;
    sender
        .send_request(request(target))
        .await
        .map_err(|error| format!("send: {error}"))
}

/// Sends one request on `sender` and reads the whole body (stream or not).
async fn exchange(sender: &mut Sender, target: &Target, since: Instant) -> Result<Sample, String> {
    let response = send(sender, target).await?;
    let status = response.status();
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut error_body = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| format!("body: {error}"))?;
        if let Some(data) = frame.data_ref() {
            first_byte.get_or_insert_with(|| since.elapsed());
            if !status.is_success() && error_body.len() < 512 {
                error_body.extend_from_slice(data);
            }
        }
    }
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&error_body).trim()
        ));
    }
    let total = since.elapsed();
    Ok(Sample {
        total,
        first_byte: first_byte.unwrap_or(total),
    })
}

/// Sends `target` once and returns the body: a check that the setup answers what it should
/// before anything is measured.
pub async fn once(target: &Target) -> Result<String, String> {
    let mut sender = connect(target.address).await?;
    let response = send(&mut sender, target).await?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("body: {error}"))?
        .to_bytes();
    let body = String::from_utf8_lossy(&body).into_owned();
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

/// `connections` connections each sending `target` back to back for `duration`.
pub async fn closed_loop(target: &Target, connections: usize, duration: Duration) -> Measured {
    let deadline = Instant::now() + duration;
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut sender = None;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let connection = match &mut sender {
                    Some(connection) => connection,
                    None => match connect(target.address).await {
                        Ok(connection) => sender.insert(connection),
                        Err(error) => {
                            samples.push(Err(error));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let sample = exchange(connection, &target, now).await;
                if sample.is_err() {
                    sender = None;
                }
                samples.push(sample);
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for worker in workers {
        if let Ok(mut done) = worker.await {
            samples.append(&mut done);
        }
    }
    Measured::from_samples(samples, duration)
}

/// Sends `target` at `rate` requests per second for `duration`, each on an idle pooled
/// connection (a new one when none is idle). Requests go out on schedule whatever earlier ones
/// are doing; latency counts from the send (the timer's own lateness, up to a millisecond, is
/// the generator's, not the proxy's).
pub async fn open_loop(target: &Target, rate: u32, duration: Duration) -> Measured {
    let pool: Arc<Mutex<Vec<Sender>>> = Arc::new(Mutex::new(Vec::new()));
    let period = Duration::from_secs(1) / rate.max(1);
    let started = Instant::now();
    let mut ticks = tokio::time::interval_at(started, period);
    let mut exchanges = Vec::new();
    loop {
        let due = ticks.tick().await;
        if due >= started + duration {
            break;
        }
        let target = target.clone();
        let pool = Arc::clone(&pool);
        exchanges.push(tokio::spawn(async move {
            let idle = pool
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop();
            let mut sender = match idle {
                Some(sender) => sender,
                None => connect(target.address).await?,
            };
            let sample = exchange(&mut sender, &target, Instant::now()).await;
            if sample.is_ok() {
                pool.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(sender);
            }
            sample
        }));
    }
    let mut samples = Vec::with_capacity(exchanges.len());
    for exchange in exchanges {
        samples.push(
            exchange
                .await
                .unwrap_or_else(|error| Err(format!("task: {error}"))),
        );
    }
    Measured::from_samples(samples, duration)
}
