//! `strom`: parse the command line, run it, print one line on failure.

use clap::Parser;
use strom_client::cli::{run, Cli};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
