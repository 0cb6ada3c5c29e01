use clap::{Parser, Subcommand};
use herald_kit::telemetry::LogArgs;
use herald_operator::run::{RunArgs, run};

/// Herald operator.
#[derive(Parser)]
#[command(name = "herald-operator", version, about = "Herald operator: NotificationPipelines into running pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile NotificationPipelines until SIGTERM.
    Run {
        #[command(flatten)]
        args: Box<RunArgs>,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Print the NotificationPipeline CRD as YAML (`deploy/crds/` holds the same file).
    Crd,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", herald_api::crd_yaml()),
        Command::Run { args, log } => {
            herald_kit::telemetry::init(log.log_format);
            run(*args, herald_kit::shutdown::on_signal()).await?;
        }
    }
    Ok(())
}
