//! `router secret new [--scheme S]`: a fresh secret in the scheme's format
//! (`whsec_` + base64 for Standard Webhooks, `ws_` + hex for Whop, hex otherwise).

use crate::verify::hmac::Encoding;
use crate::verify::presets;
use base64::Engine;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print a new random secret.
    New {
        /// The scheme it is for.
        #[arg(long, default_value = "hmac")]
        scheme: String,
    },
}

/// Random bytes in a new secret.
const SECRET_BYTES: usize = 32;

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::New { scheme } = cmd;
    if !presets::SCHEMES.contains(&scheme.as_str()) {
        anyhow::bail!("unknown scheme `{scheme}` (one of {})", presets::SCHEMES.join(", "));
    }
    let (prefix, encoding) = presets::preset_for(&scheme, false).map_or(("", Encoding::Hex), |p| p.secret_style);
    let bytes = crate::random::bytes(SECRET_BYTES);
    let body = match encoding {
        Encoding::Hex => hex::encode(bytes),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
    };
    println!("{prefix}{body}");
    Ok(ExitCode::SUCCESS)
}
