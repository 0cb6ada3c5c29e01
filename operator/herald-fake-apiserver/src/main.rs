//! The stand-in API server as a process: plain HTTP on `--listen`, printing `listening on
//! ADDR` once it accepts connections, until SIGTERM or Ctrl-C.

use clap::Parser;
use herald_fake_apiserver::FakeApiServer;

#[derive(Parser)]
#[command(name = "herald-fake-apiserver", about = "A stand-in Kubernetes API server for Herald's tests and benchmarks")]
struct Args {
    /// Address to listen on (port 0: any free port).
    #[arg(long, env = "HERALD_FAKE_APISERVER_LISTEN", default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Changes kept for watches resuming from an older resource version.
    #[arg(long, env = "HERALD_FAKE_APISERVER_HISTORY", default_value_t = 1024)]
    history: usize,
    /// Serve Strimzi's KafkaTopic and KafkaUser.
    #[arg(long, env = "HERALD_FAKE_APISERVER_STRIMZI")]
    strimzi: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let server = FakeApiServer::with_history(args.history);
    if args.strimzi {
        server.serve_strimzi();
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    herald_fake_apiserver::serve(server, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}
