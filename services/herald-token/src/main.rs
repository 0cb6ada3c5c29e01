use clap::Parser;
use herald_token::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    println!("{}", herald_token::run(&cli)?);
    Ok(())
}
