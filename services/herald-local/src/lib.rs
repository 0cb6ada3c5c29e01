//! Local mode: a whole Herald pipeline in one process. An embedded Kafka-protocol cluster
//! (librdkafka's mock cluster) unless `--bootstrap-servers` names a real one, the topic, one
//! producer and consumers up to the partition count.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_consumer::ConsumerService;
use herald_consumer::group::GroupStatus;
use herald_consumer::membership::{Membership, View};
use herald_consumer::moves::Moves;
use herald_kit::http::{BindError, Listeners, bind};
use herald_kit::kafka::{KafkaArgs, KafkaProperties};
use herald_kit::telemetry::LogArgs;
use herald_model::partition::partition_for_user;
use herald_producer::Producer;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Command-line flags; each one also reads an environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "herald-local", version, about = "Run a whole Herald pipeline on this machine")]
pub struct Args {
    /// A real Kafka cluster to use; an embedded one is started when not given.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,

    /// Topic that carries the notifications (created when missing).
    #[arg(long, env = "HERALD_TOPIC", default_value = "notifications")]
    pub topic: String,

    /// Partitions of the topic when Herald creates it.
    #[arg(long, env = "HERALD_PARTITIONS", default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub partitions: i32,

    /// Consumers to run (default: one per partition; more would sit idle, so it is capped).
    #[arg(long, env = "HERALD_CONSUMERS", value_parser = clap::value_parser!(u32).range(1..))]
    pub consumers: Option<u32>,

    /// Consumer group the consumers join.
    #[arg(long, env = "HERALD_GROUP_ID", default_value = "notifications-group")]
    pub group_id: String,

    /// Producer address.
    #[arg(long, env = "HERALD_PRODUCER_LISTEN", default_value = "127.0.0.1:8080")]
    pub producer_listen: SocketAddr,

    /// First consumer's address; consumer N listens on the next ports (port 0: any free ports).
    #[arg(long, env = "HERALD_CONSUMER_LISTEN", default_value = "127.0.0.1:8081")]
    pub consumer_listen: SocketAddr,

    #[command(flatten)]
    pub kafka_properties: KafkaProperties,

    #[command(flatten)]
    pub log: LogArgs,
}

/// What can stop local mode, by step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("starting the embedded Kafka cluster: {0}")]
    MockCluster(rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {message}")]
    Topic { topic: String, message: String },
    #[error("{0} (is another Herald already running? pick other ports with --producer-listen/--consumer-listen)")]
    Bind(#[from] BindError),
    #[error("producer: {0}")]
    Producer(#[from] herald_producer::Error),
    #[error("consumer {index}: {source}")]
    Consumer { index: usize, source: herald_consumer::Error },
}

/// What local mode's consumers get on top of the consumer's own defaults (see [`run`]).
pub const LOCAL_CONSUMER_DEFAULTS: &[(&str, &str)] =
    &[("session.timeout.ms", "6000"), ("max.poll.interval.ms", "10000"), ("fetch.wait.max.ms", "5")];

enum Kafka {
    Embedded(MockCluster<'static, DefaultProducerContext>),
    External,
}

/// Runs local mode until `shutdown` is cancelled; prints the table and the final counts.
pub async fn run(args: Args, shutdown: CancellationToken) -> Result<(), Error> {
    // The user's properties go to every client (and win). The consumers also get local-mode
    // defaults, consumer properties only (a producer given them warns that it ignores them):
    // - one process, loopback only: members rejoin within milliseconds, so short group timeouts
    //   make startup and rebalances quick;
    // - neither the embedded mock cluster nor nisshi answers a waiting fetch when a record
    //   arrives (a real Kafka broker does), so a fetch with nothing to return would hold new
    //   records back for up to fetch.wait.max.ms (500 ms by default): a read right after a send
    //   would wait that long. Fetch every 5 ms instead; on one machine that costs nothing.
    let properties = args.kafka_properties.clone();
    let consumer_properties = KafkaProperties {
        values: LOCAL_CONSUMER_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(args.kafka_properties.values.iter().cloned())
            .collect(),
        sasl_password: args.kafka_properties.sasl_password.clone(),
    };

    let (kafka, bootstrap) = match &args.bootstrap_servers {
        None => {
            let cluster = MockCluster::new(1).map_err(Error::MockCluster)?;
            cluster
                .create_topic(&args.topic, args.partitions, 1)
                .map_err(|e| Error::Topic { topic: args.topic.clone(), message: e.to_string() })?;
            let bootstrap = cluster.bootstrap_servers();
            (Kafka::Embedded(cluster), bootstrap)
        }
        Some(servers) => {
            ensure_topic(servers, &args.topic, args.partitions, &properties).await?;
            (Kafka::External, servers.clone())
        }
    };
    let kafka_args = KafkaArgs { bootstrap_servers: bootstrap.clone(), topic: args.topic.clone(), properties };
    let consumer_kafka_args = KafkaArgs { properties: consumer_properties, ..kafka_args.clone() };

    let wanted = args.consumers.unwrap_or(args.partitions as u32);
    let consumers = wanted.min(args.partitions as u32) as usize;
    if (wanted as usize) > consumers {
        tracing::warn!(
            wanted,
            partitions = args.partitions,
            running = consumers,
            "more consumers than partitions would sit idle; running one per partition"
        );
    }

    // Local mode is for one developer's machine: no authentication (each service logs that once),
    // and every listener on loopback; /metrics on ports of their own, as in a cluster.
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let producer_args = herald_producer::Args {
        kafka: kafka_args.clone(),
        listen: args.producer_listen,
        metrics_listen: metrics_addr,
        users_file: None,
        auth: Default::default(),
        edge: Default::default(),
        send_timeout: Duration::from_secs(5),
        partition_history: None,
        worker_threads: 1,
        shutdown_timeout: Duration::from_secs(10),
        log: args.log.clone(),
    };
    let producer = Producer::new(&producer_args)?;
    let producer_listener = bind(args.producer_listen).await?;
    let producer_metrics = bind(metrics_addr).await?;
    let producer_url = url(&producer_listener);
    let mut metrics_urls = vec![url(&producer_metrics)];

    let mut tasks = tokio::task::JoinSet::new();
    let mut rows = Vec::new();
    let mut memberships = Vec::new();
    let mut published = Vec::new();
    for index in 0..consumers {
        let mut addr = args.consumer_listen;
        if addr.port() != 0 {
            addr.set_port(addr.port() + index as u16);
        }
        let listener = bind(addr).await?;
        let metrics = bind(metrics_addr).await?;
        metrics_urls.push(url(&metrics));
        let consumer_args = herald_consumer::Args {
            kafka: consumer_kafka_args.clone(),
            group_id: args.group_id.clone(),
            listen: addr,
            metrics_listen: metrics_addr,
            auth: Default::default(),
            peer_token_file: None,
            edge: Default::default(),
            max_per_user: 100,
            store_budget_bytes: 256 * 1024 * 1024,
            advertise_url: Some(url(&listener)),
            peers: None,
            dead_letter_topic: None,
            read_timeout: Duration::from_secs(2),
            history: None,
            partition_history: None,
            max_streams: 10_000,
            handoff_timeout: Duration::from_secs(60),
            standby: false,
            forward_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            log: args.log.clone(),
        };
        let mut service =
            ConsumerService::new(&consumer_args).map_err(|source| Error::Consumer { index: index + 1, source })?;
        memberships.push(service.external_membership());
        published.push((listener.local_addr().ok(), service.moves()));
        rows.push((format!("consumer-{}", index + 1), url(&listener), service.status()));
        let token = shutdown.clone();
        tasks.spawn(async move {
            let result = service.serve(Listeners { api: listener, metrics: Some(metrics) }, token.clone()).await;
            if result.is_err() {
                token.cancel();
            }
            (Some(index), result.map(|s| s.processed).map_err(|source| Error::Consumer { index: index + 1, source }))
        });
    }
    let token = shutdown.clone();
    tasks.spawn(async move {
        let result =
            producer.serve(Listeners { api: producer_listener, metrics: Some(producer_metrics) }, token.clone()).await;
        if result.is_err() {
            token.cancel();
        }
        (None, result.map(|s| s.sent).map_err(Error::Producer))
    });

    let members: Vec<(SocketAddr, Arc<Moves>)> =
        published.into_iter().filter_map(|(addr, moves)| addr.map(|a| (a, moves))).collect();
    // Kept current until every consumer stopped: a consumer shutting down hands its partitions
    // off and waits to see whether any consumer stays to take them.
    let sharing = CancellationToken::new();
    tokio::spawn(share_membership(args.partitions, members.clone(), memberships.clone(), sharing.clone()));

    let kafka_label = match &kafka {
        Kafka::Embedded(cluster) => format!("embedded mock cluster at {}", cluster.bootstrap_servers()),
        Kafka::External => bootstrap.clone(),
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = wait_for_assignment(&rows, args.partitions, Duration::from_secs(60)) => {
            // Every consumer knows every holder before the table invites the first read.
            share_view(args.partitions, &members, &memberships);
            print_table(&args, &kafka_label, &producer_url, &rows, &metrics_urls);
        }
    }

    let mut first_error = None;
    let mut counts = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((who, Ok(count))) => {
                counts.insert(who, count);
            }
            Ok((_, Err(e))) => {
                tracing::error!(error = %e, "component failed");
                first_error.get_or_insert(e);
            }
            Err(e) => tracing::error!(error = %e, "component task panicked"),
        }
    }
    sharing.cancel();
    println!("\nHerald stopped.");
    println!("  producer     sent {} notifications", counts.get(&None).copied().unwrap_or(0));
    for (index, (name, _, _)) in rows.iter().enumerate() {
        println!("  {name:<12} processed {} records", counts.get(&Some(index)).copied().unwrap_or(0));
    }
    drop(kafka);
    first_error.map_or(Ok(()), Err)
}

fn url(listener: &TcpListener) -> String {
    listener.local_addr().map(|a| format!("http://{a}")).unwrap_or_default()
}

async fn ensure_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    properties: &KafkaProperties,
) -> Result<(), Error> {
    let fail = |message: String| Error::Topic { topic: topic.to_string(), message };
    let config = herald_kit::kafka::client_config(bootstrap, &[], properties, &[]).map_err(|e| fail(e.to_string()))?;
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(|e| fail(e.to_string()))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin.create_topics([&new], &options).await.map_err(|e| fail(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, partitions, "topic created"),
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::info!(topic, "topic exists; using it as it is")
            }
            Err((_, code)) => return Err(fail(code.to_string())),
        }
    }
    Ok(())
}

async fn wait_for_assignment(rows: &[(String, String, Arc<GroupStatus>)], partitions: i32, limit: Duration) {
    let start = Instant::now();
    loop {
        let assigned: usize = rows.iter().map(|(_, _, s)| s.assigned().len()).sum();
        let all_ready = rows.iter().all(|(_, _, s)| s.ready().is_ok());
        if all_ready && assigned == partitions as usize {
            return;
        }
        if start.elapsed() > limit {
            tracing::warn!(assigned, partitions, "not every partition is assigned yet; showing the current state");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_table(
    args: &Args,
    kafka: &str,
    producer_url: &str,
    rows: &[(String, String, Arc<GroupStatus>)],
    metrics_urls: &[String],
) {
    println!();
    println!("Herald is running: topic {:?}, {} partitions, group {:?}", args.topic, args.partitions, args.group_id);
    println!("Kafka: {kafka}");
    println!();
    println!("  {:<12} {:<28} {:<28} PARTITIONS", "COMPONENT", "URL", "METRICS");
    let metrics = |i: usize| metrics_urls.get(i).map(|u| format!("{u}/metrics")).unwrap_or_default();
    println!("  {:<12} {:<28} {:<28} -", "producer", producer_url, metrics(0));
    let mut owner = BTreeMap::new();
    for (i, (name, url, status)) in rows.iter().enumerate() {
        let assigned = status.assigned();
        for p in &assigned {
            owner.insert(*p, url.clone());
        }
        let shown = assigned.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
        println!(
            "  {:<12} {:<28} {:<28} {}",
            name,
            url,
            metrics(i + 1),
            if shown.is_empty() { "-".into() } else { shown }
        );
    }
    // Any valid id is a user (there is no directory in local mode): the app's own ids.
    let user = herald_model::UserId::parse("alice").unwrap_or_else(|| herald_model::UserId::from(2));
    let partition = partition_for_user(&user, args.partitions);
    let reader =
        owner.get(&partition).cloned().unwrap_or_else(|| rows.first().map(|r| r.1.clone()).unwrap_or_default());
    println!();
    println!(
        "Send a notification (form or JSON; user ids are your app's own: 1-128 characters of A-Z a-z 0-9 . _ - ~ : @ +, or numbers):"
    );
    println!("  curl -X POST {producer_url}/send -d fromID=bob -d toID={user} -d message='Hello Alice'");
    println!(
        "  curl -X POST {producer_url}/send -H 'Content-Type: application/json' -d '{{\"fromID\":\"u_8f3k2\",\"toID\":\"{user}\",\"message\":\"Hi Alice\"}}'"
    );
    println!("  (in a form body `+` is a space: send an id with `+` as %2B, e.g. -d toID=alice%2Bwork)");
    println!(
        "Read them from any consumer (each answers for every user, asking the holder of the user's partition; user {user} is on partition {partition}, held by this one):"
    );
    println!("  curl {reader}/notifications/{user}");
    println!("Read them a page at a time (the 20 newest, then older ones with the \"next\" cursor of the answer):");
    println!("  curl '{reader}/notifications/{user}?limit=20'");
    println!("  curl '{reader}/notifications/{user}?limit=20&before=<next>'");
    println!(
        "Follow them live (Server-Sent Events; after a reconnect, -H 'Last-Event-ID: <id>' replays what was missed):"
    );
    println!("  curl -N {reader}/notifications/{user}/stream");
    println!("Mark some read, or all of them (each item has \"read\", the answer \"unread\"):");
    println!(
        "  curl -X POST {producer_url}/notifications/{user}/read -H 'Content-Type: application/json' -d '{{\"ids\":[\"<id>\"]}}'"
    );
    println!(
        "  curl -X POST {producer_url}/notifications/{user}/read -H 'Content-Type: application/json' -d '{{\"all\":true}}'"
    );
    println!("Send so that a retry is shown once (the same Idempotency-Key from the same sender makes the same id):");
    println!(
        "  curl -X POST {producer_url}/send -H 'Idempotency-Key: order-42/shipped' -d fromID=shop -d toID={user} -d message='Shipped'"
    );
    println!("Metrics: the METRICS column (each component serves /metrics on a port of its own).");
    println!("Press Ctrl-C to stop.");
}

/// Tells every in-process consumer who holds which partition now, from what each publishes about
/// its claims (as `/internal/claims` would tell them: the mock cluster cannot describe groups,
/// and all members live here anyway).
fn share_view(partitions: i32, members: &[(SocketAddr, Arc<Moves>)], memberships: &[Arc<Membership>]) {
    for (m, (_, moves)) in memberships.iter().zip(members) {
        let answers = members.iter().map(|(a, moves)| (*a, moves.published()));
        m.set(View::from_answers(partitions, answers, &moves.published().url));
    }
}

/// Keeps every in-process consumer's view of the group current.
async fn share_membership(
    partitions: i32,
    members: Vec<(SocketAddr, Arc<Moves>)>,
    memberships: Vec<Arc<Membership>>,
    shutdown: CancellationToken,
) {
    loop {
        share_view(partitions, &members, &memberships);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
