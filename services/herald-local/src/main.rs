use clap::Parser;
use herald_local::{Args, run};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    herald_kit::telemetry::init_with_default(args.log.log_format, "warn,herald_local=info");
    let shutdown = herald_kit::shutdown::on_signal();
    run(args, shutdown).await?;
    Ok(())
}
