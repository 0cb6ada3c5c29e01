//! Herald's benchmarks: prints figures, asserts nothing.
//!
//! - `send`: `/send` under N concurrent connections against nisshi (memory storage), and in the
//!   same run a raw rdkafka producer with the producer's settings sending the same payloads.
//! - `consume`: records/s stored by one herald-consumer from a pre-filled topic, a raw rdkafka
//!   consumer reading the same topic in the same run, and the consumer's resident memory; then a
//!   new consumer of the same group restores those records from the log (records/s, against the
//!   same raw figure), and a second member joins to compare local and forwarded `GET`s.
//! - `latency`: a read right after a send (500 pairs), and the end-to-end latency (`sentAt` →
//!   stored) at a steady low rate, from the consumers' histogram.
//! - `auth`: `/send` and `GET /notifications/{userID}` with no authentication, with HS256 JWTs
//!   and with ES256 JWTs, in alternating rounds of the same run (what verifying a token costs).
//! - `scaling`: reads at a steady 100 sends/s while the group scales 3 → 6 → 3 and then rolls
//!   every consumer, and while a consumer is killed (SIGKILL) with and without standbys: how many
//!   reads were not answered 200 or were incomplete, and the longest run of one user's failures.
//!
//! Run through `tests/bench.sh`, which builds the release binaries first.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use herald_model::{Notification, User};
use herald_tests::broker::{Broker, Storage};
use herald_tests::http::Http;
use herald_tests::{Setup, kafka, metrics, process, scrape, wait_for, wait_ready};
use http_body_util::{BodyExt, Full};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

#[derive(Parser)]
#[command(name = "herald-bench", about = "Herald benchmarks (figures, not pass/fail)")]
struct Args {
    /// Which benchmark: send, bulk, consume, latency, auth, scaling or all.
    #[arg(default_value = "all")]
    which: String,
    /// Load duration of the send benchmark.
    #[arg(long, default_value = "15s", value_parser = herald_model::duration::parse_duration)]
    duration: Duration,
    /// Concurrent HTTP connections of the send benchmark.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Records of the consume benchmark.
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    /// Distinct recipients of the consume benchmark.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Concurrent connections of the `GET` part of the auth benchmark.
    #[arg(long, default_value_t = 4)]
    read_connections: usize,
    /// Extra librdkafka property `KEY=VALUE` for herald-consumer in the consume benchmark.
    #[arg(long = "consumer-property")]
    consumer_properties: Vec<String>,
    /// The consume benchmark's records carry a title, url, category and data, and text user ids.
    #[arg(long)]
    structured: bool,
    /// Recipients per request of the bulk benchmark.
    #[arg(long, default_value_t = 100)]
    bulk_recipients: usize,
    /// Connections of the bulk benchmark.
    #[arg(long, default_value_t = 8)]
    bulk_connections: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if matches!(args.which.as_str(), "send" | "all") {
        bench_send(&args).await;
    }
    if matches!(args.which.as_str(), "bulk" | "all") {
        bench_bulk(&args).await;
    }
    if matches!(args.which.as_str(), "consume" | "all") {
        bench_consume(&args).await;
    }
    if matches!(args.which.as_str(), "latency" | "all") {
        bench_latency(&args).await;
    }
    if matches!(args.which.as_str(), "auth" | "all") {
        bench_auth(&args).await;
    }
    if matches!(args.which.as_str(), "scaling" | "all") {
        bench_scaling().await;
    }
}

/// Reads during moves (see `herald_tests::scaling`): the same scenarios the scaling tests assert
/// on, printed.
async fn bench_scaling() {
    use herald_tests::scaling::Scenario;
    println!("scaling: 6 partitions, nisshi (sqlite storage), 100 sends/s, 4 readers calling ready consumers only");
    let mut s = Scenario::start(3, &[]).await;
    println!("  {}", s.scale_3_6_3().await.line("scaling 3->6->3"));
    println!("  {}", s.rolling_restart().await.line("rolling restart of 3"));
    s.finish().await;
    for standby in [false, true] {
        let env: Vec<(&'static str, String)> = if standby { vec![("HERALD_STANDBY", "true".into())] } else { vec![] };
        let mut s = Scenario::start(3, &env).await;
        if standby {
            s.wait_standbys(6).await;
        }
        let (rss, store) = s.memory().await;
        let kind = if standby { "standbys" } else { "no standbys" };
        println!("  memory per consumer before the kill ({kind}): RSS {rss:.1} MiB, store {store:.2} MiB");
        let label = format!("kill -9 of 1 of 3 ({kind})");
        println!("  {}", s.kill_one(Duration::from_secs(5)).await.line(&label));
        s.finish().await;
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

async fn bench_send(args: &Args) {
    let s = Setup::new(Storage::Memory, 6, 4).await;
    let http = Http::new();
    let producer = s.producer(&[("RUST_LOG", "warn".into())]);
    wait_ready(&http, &producer, Duration::from_secs(60)).await;
    let addr = producer.url.trim_start_matches("http://").to_string();
    let message = "x".repeat(100);

    // Warm up connections and the producer's batches.
    let _ = run_load(&addr, args.connections, Duration::from_secs(2), &message).await;
    let (latencies, errors, took) = run_load(&addr, args.connections, args.duration, &message).await;
    let mut sorted = latencies;
    sorted.sort_unstable();
    let ok = sorted.len();
    println!(
        "send: {} connections for {:.1} s against nisshi (memory storage), 6 partitions",
        args.connections,
        took.as_secs_f64()
    );
    println!(
        "  /send 200s          {ok} ({:.0} requests/s), other answers or errors: {errors}",
        ok as f64 / took.as_secs_f64()
    );
    println!(
        "  latency ms          p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.90),
        percentile(&sorted, 0.99),
        percentile(&sorted, 1.0)
    );
    let peak = producer.peak_rss_bytes().unwrap_or(0);
    println!("  producer RSS peak   {:.1} MiB (VmHWM, under this load)", peak as f64 / 1048576.0);

    // A raw rdkafka producer with the producer's settings and payloads: with as many records in
    // flight as /send had requests (the same concurrency), and with 20,000 (the ceiling).
    let same = raw_send(&s, &message, ok.max(20_000), args.connections).await;
    println!("  raw rdkafka producer {} in flight: {same:.0} records/s", args.connections);
    let ceiling = raw_send(&s, &message, ok.max(100_000), 20_000).await;
    println!("  raw rdkafka producer 20000 in flight: {ceiling:.0} records/s (the ceiling)");
    let rate = ok as f64 / took.as_secs_f64();
    println!("  ratio /send : raw   {:.2} (same concurrency), {:.2} (ceiling)", rate / same, rate / ceiling);
}

/// Bulk sends through one producer (no directory): `--bulk-connections` connections each sending
/// one request of `--bulk-recipients` recipients at a time, in notifications/s, next to a raw
/// rdkafka producer with as many records in flight (connections × recipients).
async fn bench_bulk(args: &Args) {
    let s = Setup::new(Storage::Memory, 6, 4).await;
    let http = Http::new();
    let producer = s.open_producer(&[("RUST_LOG", "warn".into())]);
    wait_ready(&http, &producer, Duration::from_secs(60)).await;
    let addr = producer.url.trim_start_matches("http://").to_string();
    let (connections, recipients) = (args.bulk_connections, args.bulk_recipients);
    let message = "x".repeat(100);
    let host = addr.clone();
    let request: MakeRequest = Arc::new(move |c, _| {
        let to: Vec<String> = (0..recipients).map(|i| format!("member-{c}-{i}")).collect();
        let body = serde_json::json!({"fromID": "newsroom", "toIDs": to, "message": message, "category": "news"});
        hyper::Request::post("/send")
            .header("host", &host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request")
    });
    let _ = run_requests(&addr, connections, Duration::from_secs(2), request.clone()).await;
    let (latencies, errors, took) = run_requests(&addr, connections, args.duration, request).await;
    let mut sorted = latencies;
    sorted.sort_unstable();
    let requests = sorted.len();
    let rate = (requests * recipients) as f64 / took.as_secs_f64();
    println!(
        "\nbulk: {connections} connections, {recipients} recipients per request, for {:.1} s (nisshi, memory storage, 6 partitions)",
        took.as_secs_f64()
    );
    println!(
        "  bulk /send 200s     {requests} requests ({rate:.0} notifications/s), other answers or errors: {errors}"
    );
    println!("  request latency ms  p50 {:.2}  p99 {:.2}", percentile(&sorted, 0.50), percentile(&sorted, 0.99));
    let in_flight = connections * recipients;
    let raw = raw_send(&s, "x".repeat(100).as_str(), (requests * recipients).max(50_000), in_flight).await;
    println!("  raw rdkafka producer {in_flight} in flight: {raw:.0} records/s");
    println!("  ratio bulk : raw    {:.2} (target >= 0.6)", rate / raw);
}

/// Sends `n` records with at most `window` in flight through a raw rdkafka producer configured
/// as herald-producer's is; returns records/s.
async fn raw_send(s: &Setup, message: &str, n: usize, window: usize) -> f64 {
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", s.broker.bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "1")
        .create()
        .expect("raw producer");
    let users: Vec<User> = herald_model::seed_users();
    let start = Instant::now();
    let mut in_flight = std::collections::VecDeque::new();
    for i in 0..n {
        let to = users[i % users.len()].clone();
        let note = Notification::new(users[0].clone(), to, message.to_string());
        let key = note.key();
        let payload = note.encode();
        loop {
            match raw.send_result(FutureRecord::to(&s.topic).key(&key).payload(&payload)) {
                Ok(f) => {
                    in_flight.push_back(f);
                    break;
                }
                Err(_) => {
                    if let Some(f) = in_flight.pop_front() {
                        f.await.expect("delivery").expect("raw send");
                    }
                }
            }
        }
        if in_flight.len() >= window {
            in_flight.pop_front().unwrap().await.expect("delivery").expect("raw send");
        }
    }
    for f in in_flight {
        f.await.expect("delivery").expect("raw send");
    }
    raw.flush(Duration::from_secs(30)).expect("flush");
    n as f64 / start.elapsed().as_secs_f64()
}

async fn run_load(addr: &str, connections: usize, duration: Duration, message: &str) -> (Vec<u32>, usize, Duration) {
    let (addr_owned, message) = (addr.to_string(), message.to_string());
    let request: MakeRequest = Arc::new(move |c, _| {
        hyper::Request::post("/send")
            .header("host", &addr_owned)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(format!("fromID=1&toID={}&message={message}", c % 4 + 1))))
            .expect("request")
    });
    run_requests(addr, connections, duration, request).await
}

/// Builds the `n`th request of connection `c`.
type MakeRequest = Arc<dyn Fn(usize, u64) -> hyper::Request<Full<Bytes>> + Send + Sync>;

/// Runs `connections` keep-alive connections, each sending one request at a time, for `duration`.
/// Returns the latencies of the 200s in µs, the count of everything else, and the elapsed time.
async fn run_requests(
    addr: &str,
    connections: usize,
    duration: Duration,
    request: MakeRequest,
) -> (Vec<u32>, usize, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = addr.to_string();
        let stop = stop.clone();
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).ok();
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("handshake");
            tokio::spawn(conn);
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0usize;
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let req = request(c, n);
                n += 1;
                let t = Instant::now();
                match sender.send_request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == 200;
                        let _ = resp.into_body().collect().await;
                        if ok {
                            latencies.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        all.extend(l);
        errors += e;
    }
    (all, errors, start.elapsed())
}

/// Writes `records` notifications for `users` recipients (round robin) to `topic`; `structured`:
/// with a title, url, category and data, between text user ids.
async fn prefill(bootstrap: &str, topic: &str, records: usize, users: u64, structured: bool) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let from = User { id: 1.into(), name: Some("Emma".into()) };
    let mut pending = std::collections::VecDeque::new();
    for i in 0..records {
        let n = i as u64 % users + 1;
        let (from, to) = if structured {
            let id = |raw: String| herald_model::UserId::parse(&raw).expect("a valid id");
            (User::anonymous(id("shop".into())), User::anonymous(id(format!("member-{n}@example.com"))))
        } else {
            (from.clone(), User { id: n.into(), name: Some(format!("user{n}")) })
        };
        let mut note = Notification::new(from, to, format!("notification number {i} with some text"));
        if structured {
            note.title = Some(format!("Order {i} shipped"));
            note.url = Some(format!("/orders/{i}"));
            note.category = Some("orders".into());
            note.data =
                herald_model::Data::compact(&format!(r#"{{"orderId":{i},"items":[{{"sku":"a-1","qty":2}}]}}"#)).ok();
        }
        let (key, payload) = (note.key(), note.encode());
        pending.push_back(producer.send_result(FutureRecord::to(topic).key(&key).payload(&payload)).expect("enqueue"));
        if pending.len() >= 20_000 {
            pending.pop_front().unwrap().await.expect("delivery").expect("prefill");
        }
    }
    for f in pending {
        f.await.expect("delivery").expect("prefill");
    }
}

/// Samples a counter of `service` every 10 ms until it reaches `total`; returns how much it grew
/// between the first and the last sample taken while it was moving (above 0, below `total`) and
/// the time between those two. Both ends are samples, so the rate carries no bias from how late
/// the end was noticed (the raw consumer is timed inside this process, from its first record to
/// its last).
async fn catch_up(
    http: &Http,
    service: &process::Service,
    what: &str,
    total: f64,
    count: impl Fn(&str) -> f64,
) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut first, mut last) = (None::<(Instant, f64)>, None::<(Instant, f64)>);
    loop {
        let now = count(&scrape(http, service).await);
        let at = Instant::now();
        if now >= total {
            break;
        }
        if now > 0.0 {
            first.get_or_insert((at, now));
            last = Some((at, now));
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match (first, last) {
        (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => (c1 - c0, (t1 - t0).as_secs_f64()),
        // Caught up between two samples: no rate can be told apart from the sampling.
        _ => (f64::NAN, f64::NAN),
    }
}

async fn bench_consume(args: &Args) {
    let broker = Broker::start(Storage::Memory);
    let bootstrap = broker.bootstrap();
    let topic = herald_tests::unique("consume");
    kafka::create_topic(&bootstrap, &topic, 6).await;

    prefill(&bootstrap, &topic, args.records, args.users, args.structured).await;
    println!(
        "\nconsume: {} {} records for {} users on 6 partitions (nisshi, memory storage)",
        args.records,
        if args.structured { "structured (title, url, category, data; text ids)" } else { "plain" },
        args.users
    );

    // Raw rdkafka consumer: the ceiling.
    let raw: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", herald_tests::unique("raw"))
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("max.poll.interval.ms", "10000")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("raw consumer");
    raw.subscribe(&[&topic]).expect("subscribe");
    let (mut seen, mut bytes, mut first) = (0usize, 0usize, None);
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < args.records && Instant::now() < deadline {
        if let Some(Ok(m)) = raw.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
    }
    let raw_secs = first.map_or(f64::NAN, |f| f.elapsed().as_secs_f64());
    let raw_rate = seen as f64 / raw_secs;
    drop(raw);
    println!(
        "  raw rdkafka consumer {seen} records ({:.1} MiB) in {raw_secs:.2} s: {raw_rate:.0} records/s",
        bytes as f64 / 1048576.0
    );

    // herald-consumer, measured from its first handled record to the last.
    let group = herald_tests::unique("herald");
    let ports = [herald_tests::broker::free_port(), herald_tests::broker::free_port()];
    let start_member = |port: u16| {
        process::Service::start_on(
            "herald-consumer",
            port,
            &[],
            &[
                ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone()),
                ("HERALD_TOPIC", topic.clone()),
                ("HERALD_GROUP_ID", group.clone()),
                ("HERALD_PEERS", ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")),
                ("HERALD_MAX_PER_USER", "1000000".into()),
                (
                    "HERALD_KAFKA_PROPERTIES",
                    herald_tests::TEST_CONSUMER_PROPERTIES
                        .split(',')
                        .map(|p| p.to_string())
                        .chain(args.consumer_properties.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("RUST_LOG", "warn".into()),
            ],
        )
    };
    let mut consumer = start_member(ports[0]);
    let http = Http::new();
    let total = args.records as f64;
    let handled = |text: &str| metrics::sum(text, "herald_consumer_records_total", &[]);
    let (counted, secs) = catch_up(&http, &consumer, "every record handled", total, handled).await;
    let rate = counted / secs;
    let text = scrape(&http, &consumer).await;
    let stored = metrics::sum(&text, "herald_consumer_records_total", &[("outcome", "stored")]);
    println!(
        "  herald-consumer      {stored} stored; {counted:.0} handled in the {secs:.2} s between the first sample and the last: {rate:.0} records/s"
    );
    println!("  ratio herald : raw   {:.2}", rate / raw_rate);
    let mib = |bytes: Option<u64>| bytes.unwrap_or(0) as f64 / 1048576.0;
    let at_end = consumer.rss_bytes();
    // What a pod holds once caught up: freed fetch buffers go back to the OS within the
    // allocator's decay time (100 ms), so RSS is sampled until it stops falling (500 ms without a
    // new low, at most 5 s).
    let (mut settled, mut since_low) = (at_end.unwrap_or(0), 0);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match consumer.rss_bytes() {
            Some(now) if now < settled => (settled, since_low) = (now, 0),
            _ => since_low += 1,
        }
        if since_low >= 5 {
            break;
        }
    }
    println!(
        "  consumer RSS at the last record {:.1} MiB, peak {:.1} MiB (VmHWM, during the catch-up)",
        mib(at_end),
        // VmHWM is updated lazily: never below a sample taken before it.
        mib(consumer.peak_rss_bytes().max(at_end))
    );
    println!(
        "  consumer RSS         {:.1} MiB holding {stored} notifications for {} users (settled)",
        mib(Some(settled)),
        args.users
    );
    wait_ready(&http, &consumer, Duration::from_secs(5)).await;

    // Restore: the group committed everything; a new member rebuilds the store from the log.
    wait_for("every offset committed", Duration::from_secs(60), || async {
        let c = metrics::sum(&scrape(&http, &consumer).await, "herald_consumer_committed_offset", &[]);
        (c >= total).then_some(())
    })
    .await;
    assert!(consumer.terminate(Duration::from_secs(30)).success());
    let restorer = start_member(ports[0]);
    let restored = |text: &str| metrics::sum(text, "herald_consumer_restore_records_total", &[]);
    let (counted, secs) = catch_up(&http, &restorer, "every record restored", total, restored).await;
    let restore_rate = counted / secs;
    println!(
        "  restore              {total} records; {counted:.0} in the {secs:.2} s between the first sample and the last: {restore_rate:.0} records/s"
    );
    println!("  ratio restore : raw  {:.2}", restore_rate / raw_rate);

    // Reads: a second member takes half the partitions; the first answers its own users
    // locally and forwards the others.
    let second = start_member(ports[1]);
    wait_ready(&http, &second, Duration::from_secs(60)).await;
    let claims = |url: String| {
        let http = http.clone();
        async move {
            let a = http.get(&format!("{url}/internal/claims")).await.ok()?;
            let ps: Vec<i64> = a.json["partitions"].as_array()?.iter().filter_map(|p| p.as_i64()).collect();
            Some(ps)
        }
    };
    let own = wait_for("three partitions each", Duration::from_secs(120), || async {
        let (a, b) = (claims(restorer.url.clone()).await?, claims(second.url.clone()).await?);
        (a.len() == 3 && b.len() == 3).then_some(a)
    })
    .await;
    let (mut local_users, mut remote_users) = (Vec::new(), Vec::new());
    for user in 1..=args.users {
        let p = i64::from(herald_model::partition::partition_for_user(&user.into(), 6));
        if own.contains(&p) { &mut local_users } else { &mut remote_users }.push(user);
    }
    // Every partition restored and owned before timing.
    wait_for("reads answer 200", Duration::from_secs(120), || async {
        let mut ok = true;
        for user in local_users.iter().take(3).chain(remote_users.iter().take(3)) {
            ok &= http.get(&format!("{}/notifications/{user}", restorer.url)).await.ok()?.status == 200;
        }
        ok.then_some(())
    })
    .await;
    for (label, users) in [("local", &local_users), ("forwarded", &remote_users)] {
        let mut latencies = Vec::new();
        for user in users.iter().cycle().take(2000) {
            let t = Instant::now();
            let a = http.get(&format!("{}/notifications/{user}", restorer.url)).await.expect("get");
            assert_eq!(a.status, 200, "{}", a.text);
            latencies.push(t.elapsed().as_micros() as u32);
        }
        latencies.sort_unstable();
        println!(
            "  GET {label:<10} 2000 sequential reads of ~{} notifications: p50 {:.2} ms, p99 {:.2} ms",
            args.records as u64 / args.users,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
}

/// Requests/s and latency percentiles of one load round, as one line.
fn round_line(label: &str, latencies: Vec<u32>, errors: usize, took: Duration) -> (f64, String) {
    let mut sorted = latencies;
    sorted.sort_unstable();
    let rate = sorted.len() as f64 / took.as_secs_f64();
    let line = format!(
        "{label:<30} {rate:>8.0} requests/s  p50 {:.2} ms  p99 {:.2} ms  other answers {errors}",
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99)
    );
    (rate, line)
}

/// `/send` and `GET` with no authentication, HS256 JWTs and ES256 JWTs: one producer and one
/// consumer of each kind on one broker, alternating rounds of the same load.
async fn bench_auth(args: &Args) {
    use herald_tests::jwt::{Signer, claims};
    const ROUNDS: usize = 3;
    const USERS: u64 = 1000;
    let s = Setup::new(Storage::Memory, 6, USERS).await;
    let http = Http::new();
    let dir = tempfile::tempdir().expect("temp dir");
    // The same token on every request (a client holding its token: verified once, then
    // remembered), or a new one each time (more distinct tokens than the services remember, so
    // every request is verified in full: the worst case).
    let fresh = herald_auth::VERIFIED_TOKENS * 2;
    let signers = [
        ("HS256 JWT", Signer::hs256(), 1),
        ("ES256 JWT", Signer::es256(), 1),
        ("ES256, new token each", Signer::es256(), fresh),
    ];
    type Kind = (&'static str, Vec<(&'static str, String)>, Arc<Vec<String>>, Arc<Vec<String>>);
    let mut kinds: Vec<Kind> = vec![("no authentication", Vec::new(), Arc::default(), Arc::default())];
    for (i, (label, signer, distinct)) in signers.iter().enumerate() {
        let (variable, content) = signer.verifier();
        let path = dir.path().join(format!("key-{i}"));
        std::fs::write(&path, content).expect("key file");
        // A user sending as themself; a service reading for anyone. Distinct tokens differ in
        // their expiry.
        let tokens = |scope: &str| -> Arc<Vec<String>> {
            Arc::new(
                (0..*distinct)
                    .map(|n| {
                        let mut c = claims(1, scope, "herald");
                        c["exp"] = (c["exp"].as_u64().unwrap_or_default() + n as u64).into();
                        signer.sign(&c)
                    })
                    .collect(),
            )
        };
        kinds.push((label, vec![(variable, path.display().to_string())], tokens(""), tokens(herald_auth::READ_ANY)));
    }

    let producers: Vec<_> = kinds
        .iter()
        .map(|(_, env, _, _)| {
            let mut env = env.clone();
            env.push(("RUST_LOG", "warn".into()));
            s.producer(&env)
        })
        .collect();
    for p in &producers {
        wait_ready(&http, p, Duration::from_secs(60)).await;
    }
    let message = "x".repeat(100);
    let round = args.duration / ROUNDS as u32;
    println!(
        "\nauth: /send, {} connections, {ROUNDS} alternating rounds of {:.1} s each (nisshi, memory storage)",
        args.connections,
        round.as_secs_f64()
    );
    let mut send_rates = vec![Vec::new(); kinds.len()];
    for r in 0..ROUNDS {
        for (k, ((label, _, token, _), producer)) in kinds.iter().zip(&producers).enumerate() {
            let addr = producer.url.trim_start_matches("http://").to_string();
            let (host, tokens, body) = (addr.clone(), token.clone(), format!("toID=2&message={message}"));
            // With a token the sender comes from it (fromID omitted); without, it is given.
            let body = if tokens.is_empty() { format!("fromID=1&{body}") } else { body };
            let request: MakeRequest = Arc::new(move |c, n| {
                let mut b = hyper::Request::post("/send")
                    .header("host", &host)
                    .header("content-type", "application/x-www-form-urlencoded");
                if !tokens.is_empty() {
                    let t = &tokens[(n as usize * 64 + c) % tokens.len()];
                    b = b.header("authorization", format!("Bearer {t}"));
                }
                b.body(Full::new(Bytes::from(body.clone()))).expect("request")
            });
            if r == 0 {
                let _ = run_requests(&addr, args.connections, Duration::from_secs(1), request.clone()).await;
            }
            let (latencies, errors, took) = run_requests(&addr, args.connections, round, request).await;
            let (rate, line) = round_line(&format!("  send {label}"), latencies, errors, took);
            send_rates[k].push(rate);
            println!("{line}  (round {})", r + 1);
        }
    }

    // Reads: one consumer per kind, each its own group holding every partition, of a topic of
    // 20,000 notifications for 1,000 users (the sends' topic holds millions of records, and each
    // read asks the broker for the log end, which nisshi's memory engine answers more slowly the
    // longer the log: that would be measured instead).
    let read_topic = herald_tests::unique("auth-reads");
    kafka::create_topic(&s.broker.bootstrap(), &read_topic, 6).await;
    prefill(&s.broker.bootstrap(), &read_topic, 20_000, USERS, false).await;
    let consumers: Vec<_> = kinds
        .iter()
        .map(|(_, env, _, _)| {
            let mut env = env.clone();
            env.push(("HERALD_GROUP_ID", herald_tests::unique("auth-bench")));
            env.push(("RUST_LOG", "warn".into()));
            env.push(("KAFKA_BOOTSTRAP_SERVERS", s.broker.bootstrap()));
            env.push(("HERALD_TOPIC", read_topic.clone()));
            env.push(("HERALD_MAX_PER_USER", "20".into()));
            env.push(("HERALD_KAFKA_PROPERTIES", herald_tests::TEST_CONSUMER_PROPERTIES.into()));
            process::Service::start_on("herald-consumer", herald_tests::broker::free_port(), &[], &env)
        })
        .collect();
    let stored = 20_000.0;
    for c in &consumers {
        wait_for("every record handled", Duration::from_secs(600), || async {
            let t = metrics::sum(&scrape(&http, c).await, "herald_consumer_records_total", &[]);
            (t >= stored).then_some(())
        })
        .await;
        wait_ready(&http, c, Duration::from_secs(60)).await;
    }
    println!(
        "auth: GET /notifications/{{userID}} of user 2 (20 notifications), {} connections, {ROUNDS} alternating rounds",
        args.read_connections
    );
    let mut read_rates = vec![Vec::new(); kinds.len()];
    for r in 0..ROUNDS {
        for (k, ((label, _, _, token), consumer)) in kinds.iter().zip(&consumers).enumerate() {
            let addr = consumer.url.trim_start_matches("http://").to_string();
            let (host, tokens) = (addr.clone(), token.clone());
            let request: MakeRequest = Arc::new(move |c, n| {
                let mut b = hyper::Request::get("/notifications/2").header("host", &host);
                if !tokens.is_empty() {
                    let t = &tokens[(n as usize * 64 + c) % tokens.len()];
                    b = b.header("authorization", format!("Bearer {t}"));
                }
                b.body(Full::new(Bytes::new())).expect("request")
            });
            if r == 0 {
                let _ = run_requests(&addr, args.read_connections, Duration::from_secs(1), request.clone()).await;
            }
            let (latencies, errors, took) = run_requests(&addr, args.read_connections, round, request).await;
            let (rate, line) = round_line(&format!("  GET {label}"), latencies, errors, took);
            read_rates[k].push(rate);
            println!("{line}  (round {})", r + 1);
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    for (k, (label, ..)) in kinds.iter().enumerate().skip(1) {
        println!(
            "  {label}: /send {:.2}x, GET {:.2}x of no authentication (mean of {ROUNDS} rounds)",
            mean(&send_rates[k]) / mean(&send_rates[0]),
            mean(&read_rates[k]) / mean(&read_rates[0])
        );
    }
}

/// Read-after-send and end-to-end latency on nisshi: one producer, two consumers (with
/// `fetch.wait.max.ms=5`, see `herald_tests::TEST_CONSUMER_PROPERTIES`, plus any
/// `--consumer-property`).
async fn bench_latency(args: &Args) {
    let s = Setup::new(Storage::Memory, 6, 4).await;
    let http = Http::new();
    let producer = s.producer(&[("RUST_LOG", "warn".into())]);
    let mut extra = vec![("RUST_LOG", "warn".to_string())];
    if !args.consumer_properties.is_empty() {
        extra.push((
            "HERALD_KAFKA_PROPERTIES",
            format!("{},{}", herald_tests::TEST_CONSUMER_PROPERTIES, args.consumer_properties.join(",")),
        ));
    }
    let consumers = [s.consumer(&extra), s.consumer(&extra)];
    wait_ready(&http, &producer, Duration::from_secs(60)).await;
    for c in &consumers {
        wait_ready(&http, c, Duration::from_secs(60)).await;
    }
    // Both consumers answer for every user (each holds three partitions, forwards the others).
    wait_for("reads answer 200 on both consumers", Duration::from_secs(60), || async {
        for c in &consumers {
            for user in 1..=4 {
                if http.get(&format!("{}/notifications/{user}", c.url)).await.ok()?.status != 200 {
                    return None;
                }
            }
        }
        Some(())
    })
    .await;
    let properties = format!(
        "{}{}",
        herald_tests::TEST_CONSUMER_PROPERTIES,
        args.consumer_properties.iter().map(|p| format!(",{p}")).collect::<String>()
    );
    println!("\nlatency: nisshi (memory storage), 6 partitions, 1 producer, 2 consumers with {properties}");

    let (mut reads, mut missing) = (Vec::new(), 0);
    for i in 0..500u64 {
        let to = i % 4 + 1;
        let sent = http.send_form(&producer.url, 1, to, &format!("pair {i}")).await.expect("send");
        assert_eq!(sent.status, 200, "{}", sent.text);
        let consumer = &consumers[i as usize % 2];
        let t = Instant::now();
        let got = http.get(&format!("{}/notifications/{to}", consumer.url)).await.expect("read");
        reads.push(t.elapsed().as_micros() as u32);
        let id = sent.json["id"].as_str().unwrap_or_default();
        if got.status != 200 || !got.text.contains(id) {
            missing += 1;
        }
    }
    reads.sort_unstable();
    println!(
        "  read-after-send p50 {:.2} ms p99 {:.2} ms  (500 pairs over 4 users, alternating consumers; reads without the notification just sent: {missing})",
        percentile(&reads, 0.5),
        percentile(&reads, 0.99)
    );

    // A steady low rate: 50 sends/s for 10 s.
    let scrape_all = || async {
        let mut texts = Vec::new();
        for c in &consumers {
            texts.push(scrape(&http, c).await);
        }
        texts
    };
    let before = metrics::end_to_end_buckets(&scrape_all().await);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..500u64 {
        tick.tick().await;
        let sent = http.send_form(&producer.url, 1, i % 4 + 1, "steady").await.expect("send");
        assert_eq!(sent.status, 200, "{}", sent.text);
    }
    let stored_all = |texts: &[String]| -> f64 {
        texts.iter().map(|t| metrics::sum(t, "herald_consumer_records_total", &[("outcome", "stored")])).sum()
    };
    wait_for("the steady sends stored", Duration::from_secs(30), || async {
        (stored_all(&scrape_all().await) >= 1000.0).then_some(())
    })
    .await;
    let after = metrics::end_to_end_buckets(&scrape_all().await);
    let steady: Vec<(f64, f64)> = after.iter().zip(&before).map(|(a, b)| (a.0, a.1 - b.1)).collect();
    println!(
        "  end-to-end p50 {:.2} ms p99 {:.2} ms  (sentAt -> stored, 500 sends at 50/s, from the consumers' histogram; sentAt has millisecond precision)",
        metrics::histogram_quantile(&steady, 0.5) * 1000.0,
        metrics::histogram_quantile(&steady, 0.99) * 1000.0
    );
}
