//! initiator-iname: print a new unique iSCSI initiator name, or create initiatorname.iscsi.
//! See initiator-iname(8).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use core_iscsi_tools::config::{ensure_initiator_name, generate_initiator_name, EnsuredName};
use core_iscsi_tools::exit_code::Exit;

#[derive(Parser)]
#[command(
    name = "initiator-iname",
    version,
    about = "Print a new unique iSCSI initiator name"
)]
struct Cli {
    /// Name prefix (an iqn. name without the last ':' part)
    #[arg(short, long, value_name = "PREFIX", conflicts_with = "write")]
    prefix: Option<String>,
    /// Create CONFIG_DIR/initiatorname.iscsi if it does not exist (never changes an existing
    /// one) and print the name it holds
    #[arg(short, long)]
    write: bool,
    /// Configuration directory for --write
    #[arg(
        long,
        value_name = "DIR",
        env = "CORE_ISCSI_CONFIG_DIR",
        default_value = "/etc"
    )]
    config_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.write {
        return match ensure_initiator_name(&cli.config_dir) {
            Ok(n) => {
                if let EnsuredName::Created(_) = n {
                    eprintln!(
                        "created {}",
                        cli.config_dir.join("initiatorname.iscsi").display()
                    );
                }
                println!("{}", n.name());
                Exit::Ok.into()
            }
            Err(e) => {
                eprintln!("{e}");
                Exit::Config.into()
            }
        };
    }
    match generate_initiator_name(cli.prefix.as_deref()) {
        Ok(name) => {
            println!("{name}");
            Exit::Ok.into()
        }
        Err(e) => {
            eprintln!("initiator-iname: {e}");
            if cli.prefix.is_some() {
                Exit::Usage
            } else {
                Exit::System
            }
            .into()
        }
    }
}
