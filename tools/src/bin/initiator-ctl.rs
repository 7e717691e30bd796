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
    /// Mount points are DIR/<target name>/<name>
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "CORE_ISCSI_MOUNT_ROOT",
        default_value = "/"
    )]
    mount_root: PathBuf,
    /// Seconds to wait for a LUN's disk or partition to appear (1-86400)
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    device_timeout: u64,
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
    /// Validate the configuration files (every error at once) without touching the kernel
    CheckConfig,
    /// Load the module if needed, log in one channel (or all) and mount its DEVICE entries;
    /// resumes a paused channel
    Start { channel: Option<u32> },
    /// Unmount (fails on a busy mount), remove the disks, log out, remove the channel
    Stop { channel: Option<u32> },
    /// Log out, keeping disks and mounts; their I/O waits until start
    Pause { channel: Option<u32> },
    /// Show state, target, portals, connections, negotiated parameters, LUNs, mounts, counters
    /// (any user: no secret is read)
    Status { channel: Option<u32> },
    /// Mount the channel's DEVICE entries
    Map { channel: Option<u32> },
    /// Unmount the channel's devices
    Unmap {
        channel: Option<u32>,
        /// Kill the users of busy mounts first (SIGKILL; only that mount's users), then unmount
        #[arg(long, short)]
        force: bool,
    },
    /// Unmap, then map again
    Remap { channel: Option<u32> },
    /// SendTargets discovery: every target and portal a portal knows, as CHANNEL lines to paste
    /// into the initiator file
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
    let mut c = ctl::Ctl::new(paths.clone());
    c.mount_root = cli.mount_root.clone();
    c.device_timeout = std::time::Duration::from_secs(cli.device_timeout);
    c.verbose = !cli.json;
    let r = match &cli.command {
        Command::CheckConfig => return check_config(&paths, cli.json),
        Command::Discover(a) => {
            return core_iscsi_tools::net::cli::run_discover(a, &cli.config_dir, cli.json).into()
        }
        Command::Probe(a) => {
            return core_iscsi_tools::net::cli::run_probe(a, &cli.config_dir, cli.json).into()
        }
        Command::Start { channel } => c.start(*channel),
        Command::Stop { channel } => c.stop(*channel),
        Command::Pause { channel } => c.pause(*channel),
        Command::Status { channel } => c.status(*channel),
        Command::Map { channel } => c.map(*channel),
        Command::Unmap { channel, force } => c.unmap(*channel, *force),
        Command::Remap { channel } => c.remap(*channel),
    };
    match r {
        Ok(out) => {
            if cli.json {
                match serde_json::to_string_pretty(&out) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("initiator-ctl: cannot encode JSON: {e}");
                        return Exit::System.into();
                    }
                }
            } else {
                if out.module_loaded == Some(false) {
                    println!(
                        "the core_iscsi module is not loaded: no channel is running (initiator-ctl start loads it)"
                    );
                }
                for s in &out.status {
                    print!("{}", s.render());
                }
            }
            out.exit.into()
        }
        Err(e) => {
            e.report();
            if cli.json {
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "error": e.to_string() })
                );
            }
            e.exit().into()
        }
    }
}

fn check_config(paths: &ConfigPaths, json: bool) -> ExitCode {
    match ctl::check_config(paths, &ctl::NetDevs::default()) {
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
                let errors: Vec<String> = e.errors().iter().map(|e| e.to_string()).collect();
                println!(
                    "{}",
                    serde_json::json!({ "ok": false, "error": e.to_string(), "errors": errors })
                );
            }
            Exit::Config.into()
        }
    }
}
