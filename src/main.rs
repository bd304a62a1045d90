//! The `meshwire` command line. Its subcommands and flags are a contract with
//! operators' scripts: extend, never rename or drop.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use meshwire::{config, control, dataplane, keys};

#[derive(Parser)]
#[command(
    name = "meshwire",
    version,
    about = "WireGuard + GRE/TEB + batman-adv IV + VM ports, in one process"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Print a new private key (base64, as `wg genkey`).
    Genkey,
    /// Read a private key on stdin, print its public key (as `wg pubkey`).
    Pubkey,
    /// Validate a config: exit 0, or name the bad field and exit 1.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the daemon in the foreground (logs to stderr; RUST_LOG sets the level).
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Log format: text (plain, coloured only on a terminal) or json
        /// (one object per line, for journald/Loki/Elastic).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Query or steer a running daemon over its control socket.
    Ctl {
        /// Control socket (default: /run/meshwire/meshwire.sock).
        #[arg(long, default_value = config::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long, global = true)]
        json: bool,
        /// Seconds to wait for each part of the daemon's answer (a large
        /// report renders at a low priority on a loaded machine).
        #[arg(long, global = true, default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(1..=3600))]
        timeout: u64,
        #[command(subcommand)]
        what: control::CtlCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Genkey => {
            if let Some(w) = keys::genkey_output_warning() {
                eprintln!("{w}");
            }
            let key = zeroize::Zeroizing::new(keys::generate_private());
            let text = zeroize::Zeroizing::new(keys::encode_key(&key));
            println!("{}", *text);
            ExitCode::SUCCESS
        }
        Cmd::Pubkey => pubkey(),
        Cmd::Check { config } => match config::load(&config) {
            Ok(cfg) => {
                for w in config::key_warnings(&cfg, &config) {
                    eprintln!("{}: warning: {w}", config.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::FAILURE
            }
        },
        Cmd::Run { config, log_format } => {
            init_logging(log_format);
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::FAILURE;
                }
            };
            for w in config::key_warnings(&cfg, &config) {
                tracing::warn!("{w}");
            }
            match dataplane::run(cfg, &config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Ctl {
            socket,
            json,
            timeout,
            what,
        } => {
            control::client::set_read_timeout(std::time::Duration::from_secs(timeout));
            match control::client::run(&socket, what, json) {
                Ok(out) => {
                    let _ = std::io::stdout().write_all(out.as_bytes());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("meshwire ctl: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn pubkey() -> ExitCode {
    // The private key passes through here: both copies are wiped.
    let mut s = zeroize::Zeroizing::new(String::new());
    if std::io::stdin().read_to_string(&mut s).is_err() {
        eprintln!("meshwire pubkey: cannot read stdin");
        return ExitCode::FAILURE;
    }
    match keys::decode_key(&s).map(zeroize::Zeroizing::new) {
        Ok(k) => {
            println!("{}", keys::encode_key(&keys::public_from_private(&k)));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meshwire pubkey: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// RUST_LOG as usual (default info), changed at runtime with `ctl
/// log-level`. Colour only when stderr is a terminal.
fn init_logging(format: LogFormat) {
    meshwire::log::init(format == LogFormat::Json);
}
