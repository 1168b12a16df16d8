//! The word count as a service: HTTP queries over its `counts` store, answered by whichever
//! instance owns a word, plus Prometheus metrics and a health check.
//!
//! ```text
//! GET /counts/{word}          the word's count: from the local store, or from the owner
//! GET /counts?from=a&to=m     the counts of a key range, merged across every instance
//! GET /metrics                Prometheus text format
//! GET /health                 the client state (200 when running, 503 otherwise)
//! ```
//!
//! A query that cannot be answered yet (the store is migrating in a rebalance, or restoring)
//! gets `503 Service Unavailable` with `Retry-After: 1`; a word no instance has counted, 404.
//! A word is read only from the task of its partition, on the instance the metadata names, so
//! an answer is never a stale or partial one. A range is merged from what each instance holds
//! when asked: while a rebalance moves tasks it may miss the partitions in motion.
//!
//! Two instances on one machine (a broker at localhost:9092):
//!
//! ```sh
//! cargo run --release --example interactive_queries -- --bootstrap-servers localhost:9092 --port 7070 --input README.md
//! cargo run --release --example interactive_queries -- --bootstrap-servers localhost:9092 --port 7071
//! curl localhost:7071/counts/kafka
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use serde::Deserialize;
use streams::prelude::*;
use streams::query::{HostInfo, QueryableStoreTypes, ReadOnlyKeyValueStore, StoreQueryParameters};
use streams::test_utils;
use streams::topologies::{word_count_between, WORD_COUNT_INPUT, WORD_COUNT_OUTPUT};
use streams::{KafkaStreams, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs the word count with an HTTP query service.
#[derive(Parser, Debug)]
struct Args {
    /// The Kafka cluster.
    #[arg(long, default_value = "localhost:9092")]
    bootstrap_servers: String,
    /// The host other instances reach this one at.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The HTTP port (also this instance's `application.server` port).
    #[arg(long, default_value_t = 7070)]
    port: u16,
    /// The application id.
    #[arg(long, default_value = "streams-wordcount-service")]
    application_id: String,
    /// Where the stores live (default: `<tmp>/streams-wordcount-service-<port>`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Partitions of the input and output topics, if they are created here.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Stream threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The topic of lines to count.
    #[arg(long, default_value = WORD_COUNT_INPUT)]
    input_topic: String,
    /// The topic the counts go to.
    #[arg(long, default_value = WORD_COUNT_OUTPUT)]
    output_topic: String,
    /// `classic` (eager rebalances) or `consumer` (KIP-848: incremental, Apache Kafka 4.0+).
    #[arg(long, default_value = "classic")]
    group_protocol: String,
    /// A file whose lines are written to the input topic at start.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Standby replicas of each task's store, kept warm on other instances.
    #[arg(long, default_value_t = 0)]
    standby_replicas: usize,
    /// `at_least_once` or `exactly_once_v2`.
    #[arg(long, default_value = "at_least_once")]
    processing_guarantee: String,
    /// Any other setting, `key=value` (e.g. `consumer.session.timeout.ms=6000`); repeatable.
    #[arg(long = "config", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("`{s}` is not key=value"))
}

struct Service {
    streams: KafkaStreams,
    me: HostInfo,
}

type Shared = Arc<Service>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    let servers = args.bootstrap_servers.clone();
    test_utils::ensure_topic(&servers, &args.input_topic, args.partitions)?;
    test_utils::ensure_topic(&servers, &args.output_topic, args.partitions)?;
    if let Some(path) = &args.input {
        let text = std::fs::read_to_string(path)?;
        let lines = text.lines().filter(|l| !l.trim().is_empty()).map(|l| (None, Some(l.as_bytes().to_vec())));
        println!("wrote {} lines to {}", test_utils::produce(&servers, &args.input_topic, lines)?, args.input_topic);
    }

    let me = HostInfo::new(args.host.clone(), args.port);
    let state_dir = args.state_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("{}-{}", args.application_id, args.port)));
    let mut config = StreamsConfig::new()
        .with(StreamsConfig::APPLICATION_ID, &args.application_id)
        .with(StreamsConfig::BOOTSTRAP_SERVERS, &servers)
        .with(StreamsConfig::APPLICATION_SERVER, me.to_string())
        .with(StreamsConfig::GROUP_PROTOCOL, &args.group_protocol)
        .with(StreamsConfig::NUM_STREAM_THREADS, args.threads.to_string())
        .with(StreamsConfig::COMMIT_INTERVAL_MS, "1000")
        .with(StreamsConfig::NUM_STANDBY_REPLICAS, args.standby_replicas.to_string())
        .with(StreamsConfig::PROCESSING_GUARANTEE, &args.processing_guarantee)
        .with(StreamsConfig::STATE_DIR, state_dir.to_string_lossy());
    for (key, value) in &args.settings {
        config.set(key, value);
    }
    let mut streams = KafkaStreams::new(word_count_between(&args.input_topic, &args.output_topic, Materialized::as_("counts")), config)?;
    streams.start()?;
    let service = Arc::new(Service { streams, me: me.clone() });

    let app = Router::new()
        .route("/counts/{word}", get(count))
        .route("/counts", get(range))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(service.clone());
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.port)).await?;
    println!("serving http://{me} (state in {})", state_dir.display());
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await?;

    println!("closing");
    match Arc::try_unwrap(service) {
        Ok(mut service) => {
            service.streams.close(Duration::from_secs(30));
        }
        Err(_) => eprintln!("requests still running; the client closes when they end"),
    }
    Ok(())
}

async fn shutdown() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

#[derive(Deserialize)]
struct Local {
    /// Answer from this instance's task of this partition only (a forwarded request).
    partition: Option<i32>,
}

#[derive(Deserialize)]
struct RangeQuery {
    from: String,
    to: String,
    #[serde(default)]
    local: bool,
}

fn counts_store(streams: &KafkaStreams, partition: Option<i32>) -> streams::Result<ReadOnlyKeyValueStore<String, i64>> {
    let params = StoreQueryParameters::from_name_and_type("counts", QueryableStoreTypes::key_value::<String, i64>());
    streams.store(match partition {
        Some(p) => params.with_partition(p),
        None => params,
    })
}

/// An error as a response: retriable ones as 503 with `Retry-After`.
fn failure(error: &StreamsError) -> Response {
    let status = if error.is_retriable() { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR };
    (status, [(header::RETRY_AFTER, "1")], format!("{error}\n")).into_response()
}

fn json(body: serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response()
}

/// `GET /counts/{word}`: the word's partition in the local store if this instance owns it,
/// else from its owner. Only the owning task answers: another local task would say "not
/// counted" for a word it never saw, and a task that moved away fails as retriable.
async fn count(AxumState(service): AxumState<Shared>, Path(word): Path<String>, Query(q): Query<Local>) -> Response {
    let task = {
        let service = service.clone();
        let word = word.clone();
        tokio::task::spawn_blocking(move || -> Result<Option<i64>, Result<(HostInfo, i32), StreamsError>> {
            let partition = match q.partition {
                Some(p) => p,
                None => {
                    let owner = service.streams.query_metadata_for_key("counts", &word, &Serdes::string()).map_err(Err)?;
                    if owner.active_host != service.me {
                        return Err(Ok((owner.active_host, owner.partition)));
                    }
                    owner.partition
                }
            };
            counts_store(&service.streams, Some(partition)).and_then(|store| store.get(&word)).map_err(Err)
        })
    };
    match task.await.expect("query task") {
        Ok(Some(count)) => json(serde_json::json!({ "word": word, "count": count, "host": service.me.to_string() })),
        Ok(None) => (StatusCode::NOT_FOUND, format!("`{word}` has not been counted\n")).into_response(),
        Err(Ok((owner, partition))) => forward(&owner, &format!("/counts/{}?partition={partition}", encode(&word))).await,
        Err(Err(e)) => failure(&e),
    }
}

/// `GET /counts?from=..&to=..`: the range from every instance, merged in key order.
async fn range(AxumState(service): AxumState<Shared>, Query(q): Query<RangeQuery>) -> Response {
    let local = {
        let (service, from, to) = (service.clone(), q.from.clone(), q.to.clone());
        move || -> streams::Result<BTreeMap<String, i64>> { counts_store(&service.streams, None)?.range(&from, &to)?.collect() }
    };
    if q.local {
        return match tokio::task::spawn_blocking(local).await.expect("query task") {
            Ok(counts) => json(serde_json::json!(counts)),
            Err(e) => failure(&e),
        };
    }
    let instances = {
        let service = service.clone();
        tokio::task::spawn_blocking(move || service.streams.streams_metadata_for_store("counts")).await.expect("query task")
    };
    let instances = match instances {
        Ok(instances) => instances,
        Err(e) => return failure(&e),
    };
    let mut merged = BTreeMap::new();
    for instance in instances {
        let path = format!("/counts?from={}&to={}&local=true", encode(&q.from), encode(&q.to));
        let part = if instance.host_info == service.me {
            match tokio::task::spawn_blocking(local.clone()).await.expect("query task") {
                Ok(counts) => counts,
                Err(e) => return failure(&e),
            }
        } else {
            match get_json::<BTreeMap<String, i64>>(&instance.host_info, &path).await {
                Ok(counts) => counts,
                Err(response) => return response,
            }
        };
        merged.extend(part);
    }
    json(serde_json::json!(merged))
}

async fn metrics(AxumState(service): AxumState<Shared>) -> Response {
    let text = service.streams.metrics().to_prometheus();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn health(AxumState(service): AxumState<Shared>) -> Response {
    let state = service.streams.state();
    let status = if state == State::Running { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, json(serde_json::json!({ "state": format!("{state:?}") }))).into_response()
}

/// Percent-encodes a path or query component.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A GET to another instance; its answer passed through as it is.
async fn forward(host: &HostInfo, path: &str) -> Response {
    match http_get(host, path).await {
        Ok((status, body)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = (status, body).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response.headers_mut().insert(header::RETRY_AFTER, "1".parse().expect("a header value"));
            }
            if status.is_success() {
                response.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("a header value"));
            }
            response
        }
        // The owner went away: the group will rebalance; ask again.
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], format!("{host}: {e}\n")).into_response(),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(host: &HostInfo, path: &str) -> Result<T, Response> {
    match http_get(host, path).await {
        Ok((200, body)) => serde_json::from_str(&body).map_err(|e| (StatusCode::BAD_GATEWAY, format!("{host}: {e}\n")).into_response()),
        Ok(_) => Err(forward(host, path).await),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], format!("{host}: {e}\n")).into_response()),
    }
}

/// A minimal HTTP/1.1 GET (one request per connection): status and body.
async fn http_get(host: &HostInfo, path: &str) -> std::io::Result<(u16, String)> {
    let connect = tokio::net::TcpStream::connect((host.host.as_str(), host.port));
    let mut stream = tokio::time::timeout(Duration::from_secs(5), connect).await??;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(502);
    Ok((status, body.to_string()))
}
