use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use herald_producer::{Args, run};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    herald_kit::telemetry::init(args.log.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(args.worker_threads))
        .thread_name("herald-http")
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = herald_kit::shutdown::on_signal();
        run(args, shutdown).await
    })?;
    Ok(())
}
