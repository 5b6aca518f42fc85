//! `router store get|list`: what store sinks wrote, as JSON.

use super::reader::{NotFound, Reader};
use super::DataArgs;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// One record.
    Get {
        /// The store sink's tree (its `tree:`, else the sink's name).
        tree: String,
        /// The record's key (what the target's `key:` read from the event).
        key: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Every record of a tree, in key order.
    List {
        /// The store sink's tree (its `tree:`, else the sink's name).
        tree: String,
        /// Keep records whose field equals the value (repeatable).
        #[arg(long = "where", value_name = "FIELD=VALUE")]
        filter: Vec<String>,
        #[command(flatten)]
        data: DataArgs,
    },
}

pub async fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Get { tree, key, data } => {
            let reader = Reader::open(&data)?;
            match reader.record(&tree, &key).await {
                Ok(v) => print(&v, data.json)?,
                Err(e) if e.is::<NotFound>() => {
                    eprintln!("router: {e} in tree `{tree}`");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e),
            }
        }
        Command::List { tree, filter, data } => {
            let filter = crate::admin::parse_where(&filter.join(",")).map_err(anyhow::Error::msg)?;
            let reader = Reader::open(&data)?;
            let out = reader.records(&tree, &filter).await?;
            if data.json {
                println!("{}", serde_json::to_string_pretty(&out["records"])?);
            } else {
                for r in out["records"].as_array().into_iter().flatten() {
                    println!("{}\t{}", r["key"].as_str().unwrap_or_default(), r["value"]);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print(v: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(v)?);
    } else {
        println!("{}", serde_json::to_string_pretty(v)?);
    }
    Ok(())
}
