use clap::{Parser, Subcommand};

/// Herald operator.
#[derive(Parser)]
#[command(name = "herald-operator", version, about = "Herald operator: NotificationPipelines into running pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the NotificationPipeline CRD as YAML (`deploy/crds/` holds the same file).
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", herald_api::crd_yaml()),
    }
    Ok(())
}
