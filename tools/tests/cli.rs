//! The built binaries, run against a temporary configuration directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const CTL: &str = env!("CARGO_BIN_EXE_initiator-ctl");
const INAME: &str = env!("CARGO_BIN_EXE_initiator-iname");

/// A config dir holding the test fixtures (tests/fixtures/sysconfig: the examples the howto
/// gives, uncommented).
fn example_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sysconfig");
    fs::create_dir(dir.path().join("sysconfig")).unwrap();
    for f in ["initiator", "initiator_auth", "iscsi_device_maps"] {
        fs::copy(src.join(f), dir.path().join("sysconfig").join(f)).unwrap();
    }
    fs::set_permissions(
        dir.path().join("sysconfig/initiator_auth"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::write(
        dir.path().join("initiatorname.iscsi"),
        "InitiatorName=iqn.2005-03.org.core-iscsi:01:0123456789ab\n",
    )
    .unwrap();
    dir
}

fn ctl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run_ctl(dir, args, false)
}

/// Runs initiator-ctl with `--config-dir dir`; `unprivileged`: as nobody when the tests run
/// as root (as the user running them otherwise).
fn run_ctl(dir: &Path, args: &[&str], unprivileged: bool) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(CTL);
    c.env_remove("CORE_ISCSI_CONFIG_DIR")
        .arg("--config-dir")
        .arg(dir)
        .args(args);
    if unprivileged && nix::unistd::geteuid().is_root() {
        c.uid(65534).gid(65534);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn check_config_accepts_the_shipped_examples() {
    let dir = example_dir();
    let (code, out, err) = ctl(dir.path(), &["check-config"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "", "the examples give no warning");
    assert!(out.contains("configuration OK"), "{out}");
    assert!(
        out.contains("channel 0: target iqn.2003-01.org.linux-iscsi.example:target0, 1 connection"),
        "{out}"
    );
    assert!(
        out.contains("channel 1: target (discovered at start), 1 connection"),
        "{out}"
    );
    assert!(!out.contains("somepass"), "{out}");
}

#[test]
fn check_config_json() {
    let dir = example_dir();
    let (code, out, _) = ctl(dir.path(), &["check-config", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["config"]["channels"]["1"]["connections"], 1);
    assert_eq!(
        v["config"]["channels"]["0"]["auth"]["initiator"]["secret"],
        "<redacted>"
    );
    assert!(!out.contains("somepass"));
}

#[test]
fn check_config_failure_is_one_line_and_exit_1() {
    let dir = example_dir();
    let ini = dir.path().join("sysconfig/initiator");
    let mut text = fs::read_to_string(&ini).unwrap();
    text.push_str("CHANNEL=\"2 1 eth0 127.0.0.1 32600x 0\"\n");
    let line = text.lines().count();
    fs::write(&ini, text).unwrap();
    let (code, out, err) = ctl(dir.path(), &["check-config"]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!(
            "{}:{line}: field 5 (port): \"32600x\" is not a port number (1-65535)\n",
            ini.display()
        )
    );
}

#[test]
fn check_config_refuses_a_readable_auth_file() {
    let dir = example_dir();
    let auth = dir.path().join("sysconfig/initiator_auth");
    fs::set_permissions(&auth, fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = ctl(dir.path(), &["check-config"]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1);
    assert!(
        err.contains("mode 0644") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains("somepass"));
}

#[test]
fn config_dir_from_environment() {
    let dir = example_dir();
    let out = Command::new(CTL)
        .env("CORE_ISCSI_CONFIG_DIR", dir.path())
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// The channel commands without the kernel module (these tests never load it): status of
// stopped channels, unknown channels, and a bad configuration that stops every command before
// it touches anything.
#[test]
fn status_without_the_module_shows_stopped_channels() {
    let dir = example_dir();
    let (code, out, err) = ctl(dir.path(), &["status"]);
    assert_eq!(code, 8, "not running: {err}");
    assert!(out.contains("channel 0: stopped\n"), "{out}");
    assert!(
        out.contains("target:      iqn.2003-01.org.linux-iscsi.example:target0"),
        "{out}"
    );
    assert!(out.contains("channel 1: stopped\n"), "{out}");
    assert!(out.contains("target:      (discovered at start)"), "{out}");
    assert!(
        out.contains("map disk0a: LUN 0 partition 1 (absent) not mounted"),
        "{out}"
    );
    assert!(!out.contains("somepass"), "no secret in status: {out}");
    let (code, out, _) = ctl(dir.path(), &["--json", "status", "0"]);
    assert_eq!(code, 8);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"][0]["channel"], 0);
    assert_eq!(v["status"][0]["state"], "stopped");
    assert_eq!(v["status"][0]["maps"][1]["name"], "disk0b");
    assert!(!out.contains("somepass"), "no secret in --json: {out}");
}

#[test]
fn unknown_channels_exit_3() {
    let dir = example_dir();
    for args in [
        &["start", "7"][..],
        &["pause", "7"],
        &["map", "7"],
        &["status", "7"],
    ] {
        let (code, _, err) = ctl(dir.path(), args);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(
            err.starts_with("initiator-ctl: channel 7: not defined in "),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn a_bad_configuration_stops_every_command() {
    let dir = example_dir();
    fs::write(
        dir.path().join("sysconfig/iscsi_device_maps"),
        "DEVICE=\"0 0 1\"\n",
    )
    .unwrap();
    for args in [
        &["start"][..],
        &["stop"],
        &["pause", "0"],
        &["status"],
        &["map"],
        &["unmap", "0"],
        &["remap"],
    ] {
        let (code, out, err) = ctl(dir.path(), args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_eq!(out, "");
        assert!(err.contains("iscsi_device_maps:1: field 4 (name)"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn start_without_a_name_file_creates_none_when_the_config_is_bad() {
    let dir = example_dir();
    fs::remove_file(dir.path().join("initiatorname.iscsi")).unwrap();
    fs::write(dir.path().join("sysconfig/initiator"), "CHANNEL=\"0 1\"\n").unwrap();
    let (code, _, err) = ctl(dir.path(), &["start"]);
    assert_eq!(code, 1, "{err}");
    assert!(!dir.path().join("initiatorname.iscsi").exists());
}

/// `start` refuses a network device that does not exist before it changes anything: no name
/// file created, no module loaded.
#[test]
fn start_refuses_a_missing_network_device_first() {
    if !nix::unistd::geteuid().is_root() {
        return; // start says "needs root" before it reads the files
    }
    let dir = example_dir();
    fs::remove_file(dir.path().join("initiatorname.iscsi")).unwrap();
    let ini = dir.path().join("sysconfig/initiator");
    fs::write(
        &ini,
        "CHANNEL=\"3 2 lo 127.0.0.1 3260 0 AuthMethod=None\"\nCHANNEL=\"3 2 nosuchif9 127.0.0.2 3260 0\"\n",
    )
    .unwrap();
    fs::write(dir.path().join("sysconfig/iscsi_device_maps"), "").unwrap();
    fs::write(dir.path().join("sysconfig/initiator_auth"), "").unwrap();
    let loaded_before = Path::new("/sys/kernel/config/core_iscsi").exists();
    let (code, out, err) = ctl(dir.path(), &["start", "3"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!(
            "{}:2: field 3 (network device): no such network device 'nosuchif9'\n",
            ini.display()
        )
    );
    assert!(!dir.path().join("initiatorname.iscsi").exists());
    assert_eq!(
        Path::new("/sys/kernel/config/core_iscsi").exists(),
        loaded_before,
        "a refused start loaded the module"
    );
}

/// The example files `make install` puts in /etc/sysconfig start nothing and hold no secret;
/// with them, `check-config` is happy and says there is nothing to do.
#[test]
fn shipped_examples_are_commented_out() {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sysconfig");
    fs::create_dir(dir.path().join("sysconfig")).unwrap();
    for f in ["initiator", "initiator_auth", "iscsi_device_maps"] {
        let text = fs::read_to_string(src.join(f)).unwrap();
        for l in text.lines() {
            assert!(l.is_empty() || l.starts_with('#'), "{f}: active line {l:?}");
        }
        fs::copy(src.join(f), dir.path().join("sysconfig").join(f)).unwrap();
    }
    fs::set_permissions(
        dir.path().join("sysconfig/initiator_auth"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (code, out, err) = ctl(dir.path(), &["check-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("configuration OK"), "{out}");
    assert!(
        out.contains("has no CHANNEL line): start has nothing to do"),
        "{out}"
    );
    // The example secrets of the fixtures are not in the shipped file.
    let auth = fs::read_to_string(src.join("initiator_auth")).unwrap();
    assert!(!auth.contains("somepass"), "{auth}");
}

/// check-config reports the bad lines of every file in one run, each on its own line.
#[test]
fn check_config_reports_every_error_at_once() {
    let dir = example_dir();
    let ini = dir.path().join("sysconfig/initiator");
    let maps = dir.path().join("sysconfig/iscsi_device_maps");
    let mut text = fs::read_to_string(&ini).unwrap();
    text.push_str(
        "CHANNEL=\"2 1 127.0.0.1 32600x 0\"\nCHANNEL=\"3 1 127.0.0.1 3260 0 immediatedata=No\"\n",
    );
    let n = text.lines().count();
    fs::write(&ini, text).unwrap();
    fs::write(
        &maps,
        "DEVICE=\"0 0 1 a\"\nDEVICE=\"2 0 1 b\"\nDEVICE=\"0 0 x c\"\n",
    )
    .unwrap();
    let (code, out, err) = ctl(dir.path(), &["check-config"]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!(
            "{i}:{}: field 5 (port): \"32600x\" is not a port number (1-65535)\n\
             {i}:{n}: field 8 (attributes): unknown channel attribute \"immediatedata\" (the iSCSI key is spelt ImmediateData: keys are case-sensitive)\n\
             {m}:3: field 3 (partition): \"x\" is not a partition number (0-255, 0 = whole device)\n",
            n - 1,
            i = ini.display(),
            m = maps.display()
        )
    );
    let (code, out, _) = ctl(dir.path(), &["--json", "check-config"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["errors"].as_array().unwrap().len(), 3);
}

/// The summary says what the module will do: how many connections through which portal and
/// device, up to what the target grants.
#[test]
fn check_config_summary_says_what_the_module_does() {
    let dir = example_dir();
    fs::write(
        dir.path().join("sysconfig/initiator"),
        "CHANNEL=\"1 2 lo 127.0.0.1 3260 0 AuthMethod=None\"\nCHANNEL=\"1 2 127.0.0.2 3260 0\"\n",
    )
    .unwrap();
    fs::write(dir.path().join("sysconfig/initiator_auth"), "").unwrap();
    fs::write(dir.path().join("sysconfig/iscsi_device_maps"), "").unwrap();
    let (code, out, err) = ctl(dir.path(), &["check-config"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "", "more than one connection is no longer a warning");
    assert!(
        out.contains("channel 1: target (discovered at start), 4 connections (2 via 127.0.0.1:3260 on lo, 2 via 127.0.0.2:3260), up to what the target grants; auth none; 0 maps\n"),
        "{out}"
    );
}

/// A network device that does not exist is an error of the file, at its line and field.
#[test]
fn check_config_refuses_a_missing_network_device() {
    let dir = example_dir();
    let ini = dir.path().join("sysconfig/initiator");
    let mut text = fs::read_to_string(&ini).unwrap();
    text.push_str("CHANNEL=\"2 1 nosuchif9 127.0.0.1 3260 0\"\n");
    let line = text.lines().count();
    fs::write(&ini, text).unwrap();
    let (code, out, err) = ctl(dir.path(), &["check-config"]);
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert_eq!(
        err,
        format!(
            "{}:{line}: field 3 (network device): no such network device 'nosuchif9'\n",
            ini.display()
        )
    );
}

fn ctl_unprivileged(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run_ctl(dir, args, true)
}

/// A non-root user is told so before any file is read (even a broken one), with
/// `initiator-ctl:` once; `status` works for them without the secrets file and says the
/// module is not loaded.
#[test]
fn not_root_is_said_first_and_status_still_works() {
    let dir = example_dir();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(
        dir.path().join("sysconfig"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    for args in [
        &["start"][..],
        &["stop"],
        &["pause"],
        &["map"],
        &["unmap"],
        &["remap"],
    ] {
        let (code, out, err) = ctl_unprivileged(dir.path(), args);
        assert_eq!(code, 6, "{args:?}: {err}");
        assert_eq!(out, "");
        assert_eq!(
            err,
            "initiator-ctl: this command needs root (it reads the CHAP secrets, loads the module and mounts)\n"
        );
    }
    let (code, out, err) = ctl_unprivileged(dir.path(), &["status"]);
    assert_eq!(code, 8, "{err}");
    assert_eq!(err, "");
    assert!(
        out.starts_with("the core_iscsi module is not loaded: no channel is running"),
        "{out}"
    );
    assert!(out.contains("channel 0: stopped\n"), "{out}");
    // check-config reads the secrets: as a user it says what to do.
    if nix::unistd::geteuid().is_root() {
        let (code, _, err) = ctl_unprivileged(dir.path(), &["check-config"]);
        assert_eq!(code, 1, "{err}");
        assert_eq!(
            err,
            format!(
                "{}: cannot read: permission denied (run this as root)\n",
                dir.path().join("sysconfig/initiator_auth").display()
            )
        );
    }
    let (_, out, _) = ctl_unprivileged(dir.path(), &["--json", "status"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["module_loaded"], false);
    // A broken file does not change the answer for start: root comes first.
    fs::write(dir.path().join("sysconfig/initiator"), "CHANNEL=\"0 1\"\n").unwrap();
    let (code, _, err) = ctl_unprivileged(dir.path(), &["start"]);
    assert_eq!(code, 6, "{err}");
}

/// With no channel configured, start succeeds and does nothing (no module is loaded).
#[test]
fn start_with_no_channel_does_nothing() {
    if !nix::unistd::geteuid().is_root() {
        let (code, _, _) = ctl(Path::new("/nonexistent"), &["start"]);
        assert_eq!(code, 6);
        return;
    }
    let dir = example_dir();
    fs::write(dir.path().join("sysconfig/initiator"), "# none\n").unwrap();
    fs::write(dir.path().join("sysconfig/iscsi_device_maps"), "").unwrap();
    fs::write(dir.path().join("sysconfig/initiator_auth"), "").unwrap();
    let loaded_before = Path::new("/sys/kernel/config/core_iscsi").exists();
    let (code, out, err) = ctl(dir.path(), &["start"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.ends_with("initiator: nothing to start\n") && out.contains("no channel in "),
        "{out}"
    );
    assert_eq!(
        Path::new("/sys/kernel/config/core_iscsi").exists(),
        loaded_before,
        "start with nothing to do loaded the module"
    );
}

/// probe checks the target name before it connects: nothing reaches the portal.
#[test]
fn probe_checks_the_target_name_before_connecting() {
    let dir = example_dir();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let portal = l.local_addr().unwrap().to_string();
    let (code, out, err) = ctl(dir.path(), &["probe", "-p", &portal, "-T", "disks"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "");
    assert_eq!(
        err,
        "initiator-ctl: -T/--target: \"disks\" is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id], eui. or naa.)\n"
    );
    assert_eq!(
        l.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "probe connected with a bad name"
    );
}

/// discover creates a missing initiatorname.iscsi, as start does, and a target that hangs up
/// is not called a protocol error.
#[test]
fn discover_creates_the_name_file() {
    let dir = example_dir();
    let name = dir.path().join("initiatorname.iscsi");
    fs::remove_file(&name).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let portal = l.local_addr().unwrap().to_string();
    let t = std::thread::spawn(move || drop(l.accept().unwrap()));
    let (code, out, err) = ctl(dir.path(), &["discover", "-p", &portal, "--timeout", "5"]);
    t.join().unwrap();
    assert_eq!(code, 3, "{err}");
    assert_eq!(out, "");
    let text = fs::read_to_string(&name).unwrap();
    let created = text
        .lines()
        .find_map(|l| l.strip_prefix("InitiatorName="))
        .unwrap();
    assert!(
        err.starts_with(&format!(
            "initiator-ctl: created {} ({created})\n",
            name.display()
        )),
        "{err}"
    );
    assert!(!err.contains("protocol error"), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
}

/// What discover prints for names a target made up: escaped, and no CHANNEL line for a name
/// that is not an iSCSI name.
#[test]
fn discover_lines_escape_what_the_target_sent() {
    use core_iscsi_tools::net::cli::channel_lines;
    use core_iscsi_tools::net::{DiscoveredTarget, Portal};
    let dir = tempfile::tempdir().unwrap();
    let targets = [
        DiscoveredTarget {
            name: "iqn.2003-01.org.example:good".into(),
            addresses: vec!["10.0.0.1:3260,1".into(), "[::1]:3261,1".into()],
        },
        DiscoveredTarget {
            name: "iqn.2003-01.org.example:\x1b]0;owned\x07".into(),
            addresses: vec![],
        },
        DiscoveredTarget {
            name: "iqn.2003-01.org.example:noaddr".into(),
            addresses: vec![],
        },
    ];
    let lines = channel_lines(&targets, &Portal::parse("192.0.2.1").unwrap(), dir.path());
    assert_eq!(
        lines,
        [
            "# iqn.2003-01.org.example:good",
            "CHANNEL=\"0 1 10.0.0.1 3260 0 iqn.2003-01.org.example:good\"",
            "CHANNEL=\"0 1 ::1 3261 0 iqn.2003-01.org.example:good\"",
            "# skipped \"iqn.2003-01.org.example:\\x1b]0;owned\\x07\": not a valid iSCSI name",
            "# iqn.2003-01.org.example:noaddr",
            "CHANNEL=\"1 1 192.0.2.1 3260 0 iqn.2003-01.org.example:noaddr\"",
        ]
    );
    assert!(lines.iter().all(|l| !l.contains('\x1b')));
}

#[test]
fn usage_errors_exit_2() {
    let dir = example_dir();
    assert_eq!(ctl(dir.path(), &["frobnicate"]).0, 2);
    assert_eq!(ctl(dir.path(), &["start", "notanumber"]).0, 2);
}

#[test]
fn initiator_iname_prints_unique_valid_names() {
    let run = || {
        let out = Command::new(INAME).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let (a, b) = (run(), run());
    assert_ne!(a, b);
    for n in [a, b] {
        let n = n.strip_suffix('\n').unwrap();
        let hex = n.strip_prefix("iqn.2005-03.org.core-iscsi:01:").unwrap();
        assert_eq!(hex.len(), 12);
        assert!(hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }
}

#[test]
fn initiator_iname_write_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(INAME)
            .arg("--write")
            .arg("--config-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    let second = run();
    assert_eq!(first, second);
    let text = fs::read_to_string(dir.path().join("initiatorname.iscsi")).unwrap();
    assert!(text.contains(&format!("InitiatorName={first}")));
}

/// Timeouts out of range are refused by the command line (exit 2, one line naming the option),
/// not met later as an overflow: `start` would have changed things by then.
#[test]
fn timeouts_out_of_range_are_refused_up_front() {
    let dir = example_dir();
    for args in [
        &["--device-timeout", "18446744073709551615", "status"][..],
        &["--device-timeout", "0", "status"][..],
        &["discover", "-p", "127.0.0.1", "--timeout", "18446744073709551615"][..],
    ] {
        let (code, _, err) = ctl(dir.path(), args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with("error: invalid value"), "{args:?}: {err}");
        assert!(err.contains("timeout"), "{args:?}: {err}");
    }
}
