//! initiator-ctl: manage core-iscsi channels. See initiator-ctl(8).
//!
//! Thin: parses the command line and calls `core_iscsi_tools::ctl`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use core_iscsi_tools::config::ConfigPaths;
use core_iscsi_tools::ctl;
use core_iscsi_tools::exit_code::Exit;

#[derive(Parser)]
#[command(name = "initiator-ctl", version, about = "Manage core-iscsi channels")]
struct Cli {
    /// Configuration directory holding sysconfig/initiator, sysconfig/initiator_auth,
    /// sysconfig/iscsi_device_maps and initiatorname.iscsi
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "CORE_ISCSI_CONFIG_DIR",
        default_value = "/etc"
    )]
    config_dir: PathBuf,
    /// Print results as JSON on standard output
    #[arg(long, global = true)]
    json: bool,
    /// More log output (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration files without touching the kernel
    CheckConfig,
    /// Start (or resume) one channel, or all (not yet implemented)
    Start { channel: Option<u32> },
    /// Unmap and log out one channel, or all (not yet implemented)
    Stop { channel: Option<u32> },
    /// Log out, holding I/O queued (not yet implemented)
    Pause { channel: Option<u32> },
    /// Show channel state (not yet implemented)
    Status { channel: Option<u32> },
    /// Mount the channel's DEVICE entries (not yet implemented)
    Map { channel: Option<u32> },
    /// Unmount the channel's DEVICE entries (not yet implemented)
    Unmap {
        channel: Option<u32>,
        /// Kill users of the mounted devices first
        #[arg(long)]
        force: bool,
    },
    /// Unmap, then map again (not yet implemented)
    Remap { channel: Option<u32> },
    /// SendTargets discovery: list every target and portal a portal knows
    Discover(core_iscsi_tools::net::cli::DiscoverArgs),
    /// Log in to a target from userspace and report parameters, LUNs, INQUIRY and capacity
    Probe(core_iscsi_tools::net::cli::ProbeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    env_logger::Builder::new()
        .filter_level(level)
        .parse_default_env()
        .init();
    let paths = ConfigPaths::new(&cli.config_dir);
    let name = match &cli.command {
        Command::CheckConfig => return check_config(&paths, cli.json),
        Command::Start { .. } => "start",
        Command::Stop { .. } => "stop",
        Command::Pause { .. } => "pause",
        Command::Status { .. } => "status",
        Command::Map { .. } => "map",
        Command::Unmap { .. } => "unmap",
        Command::Remap { .. } => "remap",
        Command::Discover(a) => return core_iscsi_tools::net::cli::run_discover(a, &cli.config_dir, cli.json).into(),
        Command::Probe(a) => return core_iscsi_tools::net::cli::run_probe(a, &cli.config_dir, cli.json).into(),
    };
    let e = ctl::not_implemented(name);
    eprintln!("{e}");
    e.exit().into()
}

fn check_config(paths: &ConfigPaths, json: bool) -> ExitCode {
    match ctl::check_config(paths) {
        Ok(report) => {
            for w in &report.warnings {
                eprintln!("{w}");
            }
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("initiator-ctl: cannot encode JSON: {e}");
                        return Exit::System.into();
                    }
                }
            } else {
                print!("{}", report.summary());
            }
            Exit::Ok.into()
        }
        Err(e) => {
            eprintln!("{e}");
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "error": e.to_string() })
                );
            }
            Exit::Config.into()
        }
    }
}
