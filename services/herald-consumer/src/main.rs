use clap::Parser;
use herald_consumer::{Args, run};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    herald_kit::telemetry::init(args.log.log_format);
    let shutdown = herald_kit::shutdown::on_signal();
    run(args, shutdown).await?;
    Ok(())
}
