use clap::Parser;
use herald_consumer::{Args, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    herald_kit::telemetry::init(args.log.log_format);
    let shutdown = herald_kit::shutdown::on_signal();
    run(args, shutdown).await?;
    Ok(())
}
