//! Golden tests: the howto's own examples, verbatim, parse to the expected model; the auth
//! file's permission check; secrets never printed; initiator names.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use core_iscsi_tools::config::auth::{parse_auth, read_auth_file};
use core_iscsi_tools::config::device_maps::parse_device_maps;
use core_iscsi_tools::config::initiator::parse_initiator;
use core_iscsi_tools::config::{
    ensure_initiator_name, generate_initiator_name, load, validate_iscsi_name, Address, AuthMethod,
    ChapAlgorithm, ConfigError, ConfigPaths, EnsuredName,
};

/// The howto's "Example 2)" block, with its comment lines, exactly as in the howto.
const HOWTO_CHANNELS: &str = "\t   # Arguments:
\t   #        (REQUIRED 1st arg) iSCSI Channel (1 iSCSI Session for N Logical Units per CHANNEL=)
\t   #        (REQUIRED 2nd arg) iSCSI IPv4 Connection Count for iSCSI Session
\t   #        (OPTIONAL 3rd arg) Network Interconnect Device Name (optional)
\t   #        (REQUIRED 4th arg) IPv4 iSCSI Target Node Address
\t   #        (REQUIRED 5th arg) iSCSI Target Service Port
\t   #        (REQUIRED 6th arg) Network Interconnect
\t   #        (REQUIRED 7th arg) iSCSI Parameter Keys (seperated by ;)
\t   #        (REQUIRED 8th arg) iSCSI Channel Attributes (seperated by ;)
\t   #        (OPTIONAL 9th arg) Target IQN Name

\t   CHANNEL=\"0 1 eth0 192.168.0.1 3260 0 AuthMethod=CHAP,None;MaxRecvDataSegmentLength=8192 nopout_timeout=5\"
\t   CHANNEL=\"1 2 eth0 192.168.0.2 3260 0 AuthMethod=None;MaxRecvDataSegmentLength=32768;ImmediateData=No nopout_timeout=10, nopout_response_timeout=10\"
\t   CHANNEL=\"1 2 eth1 192.168.1.2 3260 0\"
";

const HOWTO_AUTH: &str = "\t\t# Channel ID
\t\t#     | Mutual Authentication
\t\t#     | |  Client username
\t\t#     | |    |   Client password
\t\t#     | |    |         |       Server username
\t\t#     | |    |         |              |       Server password
\t\t#     | |    |         |              |              |
\t\tAUTH=\"0 1 someuser somepass034 someuser_ma somepass014_ma\"
\t\tAUTH=\"1 0 another_user 12345\"
";

const HOWTO_MAPS: &str = "\t    \t#
\t\t#       iSCSI Channel ID 
\t\t#       | iSCSI Logical Unit Number
\t\t#       | | Parition Number
\t\t#       | | |     
\t\t#       | | |   iSCSI device mount point
\t\t#       | | |    |
\t\tDEVICE=\"0 0 1 disk0a\" # Channel 0, LUN 0, Partition 1 -> /iqn.target.example/disk0a
\t\tDEVICE=\"0 0 2 disk0b\" # Channel 0, LUN 0, Partition 2 -> /iqn.target.example/disk0b
\t\tDEVICE=\"0 1 1 disk1a\" # Channel 0, LUN 1, Partition 1 -> /iqn.target.example/disk1a
\t\tDEVICE=\"0 2 1 disk2a\" # Channel 0, LUN 2, Partition 1 -> /iqn.target.example/disk2a
\t\tDEVICE=\"1 0 0 dvd0\"   # Channel 1, LUN 0, Partition 0 -> /iqn.target.example/dvd0
\t\tDEVICE=\"1 1 1 disk0a\" # Channel 1, LUN 1, Partition 1 -> /iqn.target.example/disk0a
\t\tDEVICE=\"1 1 2 disk0b\" # Channel 1, LUN 1, Partition 2 -> /iqn.target.example/disk0b
\t\tDEVICE=\"1 2 1 disk1a\" # Channel 1, LUN 2, Partition 1 -> /iqn.target.example/disk1a
";

const SECRETS: [&str; 3] = ["somepass034", "somepass014_ma", "12345"];

fn ip(a: u8, b: u8, c: u8, d: u8) -> Address {
    Address::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

#[test]
fn howto_example_1_single_line() {
    let text = "CHANNEL=\"0 1 eth0 192.168.0.1 3260 0 AuthMethod=CHAP,None;MaxRecvDataSegmentLength=8192 nopout_timeout=5\"\n";
    let chans = parse_initiator(Path::new("initiator"), text).unwrap();
    let c = &chans[&0];
    assert_eq!(c.connections, 1);
    assert_eq!(c.portals.len(), 1);
    assert_eq!(c.portals[0].address, ip(192, 168, 0, 1));
    assert_eq!(c.portals[0].port, 3260);
    assert_eq!(c.portals[0].netdev.as_deref(), Some("eth0"));
    assert_eq!(c.keys.get("AuthMethod"), Some("CHAP,None"));
    assert_eq!(
        c.keys.auth_methods(),
        vec![AuthMethod::Chap, AuthMethod::None]
    );
    assert_eq!(c.keys.get("MaxRecvDataSegmentLength"), Some("8192"));
    assert_eq!(c.attrs.nopout_timeout, 5);
    assert_eq!(c.attrs.nopout_response_timeout, 10); // the default the howto describes
    assert_eq!(c.attrs.tmf_timeout, 10); // ours, defaulted
    assert_eq!(c.target_name, None);
}

#[test]
fn tmf_timeout_is_an_attribute() {
    let text = "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=None nopout_timeout=5, tmf_timeout=3600\"\n";
    let chans = parse_initiator(Path::new("initiator"), text).unwrap();
    assert_eq!(chans[&0].attrs.tmf_timeout, 3600);
    assert_eq!(chans[&0].attrs.nopout_timeout, 5);
}

#[test]
fn howto_example_2_verbatim() {
    let chans = parse_initiator(Path::new("initiator"), HOWTO_CHANNELS).unwrap();
    assert_eq!(chans.len(), 2);
    let c1 = &chans[&1];
    // "an iSCSI Session with four (4) iSCSI/TCP Connections to 192.168.[0,1].2 at port 3260"
    assert_eq!(c1.connections, 4);
    let portals: Vec<_> = c1
        .portals
        .iter()
        .map(|p| (p.address.clone(), p.port, p.netdev.clone(), p.connections))
        .collect();
    assert_eq!(
        portals,
        vec![
            (ip(192, 168, 0, 2), 3260, Some("eth0".to_string()), 2),
            (ip(192, 168, 1, 2), 3260, Some("eth1".to_string()), 2),
        ]
    );
    let keys: Vec<_> = c1.keys.iter().collect();
    assert_eq!(
        keys,
        vec![
            ("AuthMethod", "None"),
            ("MaxRecvDataSegmentLength", "32768"),
            ("ImmediateData", "No")
        ]
    );
    assert_eq!(c1.attrs.nopout_timeout, 10);
    assert_eq!(c1.attrs.nopout_response_timeout, 10);
    assert_eq!(c1.attrs.chap_algorithms, vec![ChapAlgorithm::Md5]);
    assert_eq!(c1.portals[1].line, 14);
}

/// MaxConnections in the file only bounds the channel's connection count: the module offers
/// that count itself, so the key is not passed on in `params`.
#[test]
fn max_connections_bounds_the_count_and_is_not_passed_on() {
    let text = "CHANNEL=\"1 2 10.0.0.2 3260 0 MaxConnections=0x4;ImmediateData=No\"\nCHANNEL=\"1 2 10.0.0.3 3260 0\"\n";
    let chans = parse_initiator(Path::new("initiator"), text).unwrap();
    assert_eq!(chans[&1].connections, 4);
    assert_eq!(chans[&1].keys.get("MaxConnections"), Some("4"));
    assert_eq!(chans[&1].keys.module_params(), "ImmediateData=No");
}

#[test]
fn optional_fields_and_address_forms() {
    let text = r#"
CHANNEL="2 1 ::1 3260 0"
CHANNEL="3 1 [::1] 3261 0 iqn.2003-01.org.linux-iscsi.host:sn.1"
CHANNEL="4 1 lo target.example.org 3260 0 HeaderDigest=CRC32C,None chap_algorithms=SHA256,MD5;queue_depth=64 eui.02004567A425678D"
CHANNEL="5 1 localhost 3260 0 login_timeout=30"   # attributes without keys, trailing comment
CHANNEL='6 1 eth0 ::1 3260 0'
"#;
    let chans = parse_initiator(Path::new("initiator"), text).unwrap();
    assert_eq!(chans[&2].portals[0].address.to_string(), "::1");
    assert_eq!(chans[&2].portals[0].netdev, None);
    assert_eq!(chans[&3].portals[0].endpoint(), "[::1]:3261");
    assert_eq!(
        chans[&3].target_name.as_deref(),
        Some("iqn.2003-01.org.linux-iscsi.host:sn.1")
    );
    let c4 = &chans[&4];
    assert_eq!(c4.portals[0].netdev.as_deref(), Some("lo"));
    assert_eq!(
        c4.portals[0].address,
        Address::Hostname("target.example.org".into())
    );
    assert_eq!(
        c4.attrs.chap_algorithms,
        vec![ChapAlgorithm::Sha256, ChapAlgorithm::Md5]
    );
    assert_eq!(c4.attrs.queue_depth, 64);
    assert_eq!(c4.target_name.as_deref(), Some("eui.02004567A425678D"));
    assert_eq!(
        chans[&5].portals[0].address,
        Address::Hostname("localhost".into())
    );
    assert_eq!(chans[&5].attrs.login_timeout, 30);
    assert!(chans[&5].keys.is_empty());
    assert_eq!(chans[&6].portals[0].netdev.as_deref(), Some("eth0"));
}

#[test]
fn howto_auth_example_verbatim() {
    let (entries, warnings) = parse_auth(Path::new("initiator_auth"), HOWTO_AUTH).unwrap();
    let c0 = &entries[&0].credentials;
    assert_eq!(c0.initiator.user, "someuser");
    assert_eq!(c0.initiator.secret.expose(), b"somepass034");
    let m = c0.mutual.as_ref().unwrap();
    assert_eq!(m.user, "someuser_ma");
    assert_eq!(m.secret.expose(), b"somepass014_ma");
    let c1 = &entries[&1].credentials;
    assert_eq!(c1.initiator.user, "another_user");
    assert!(c1.mutual.is_none());
    let w: Vec<String> = warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with("initiator_auth:8: field 4 (secret): warning: shorter than 12 bytes"),
        "{w:?}"
    );
    assert!(
        w[1].starts_with("initiator_auth:9: field 4 (secret): warning: shorter than 12 bytes"),
        "{w:?}"
    );
    // Neither Debug nor the warnings show a secret.
    let debug = format!("{entries:?} {warnings:?} {}", w.join(" "));
    for s in SECRETS {
        assert!(!debug.contains(s), "secret {s} leaked: {debug}");
    }
    assert!(debug.contains("<redacted>"));
}

#[test]
fn howto_device_maps_verbatim() {
    let maps = parse_device_maps(Path::new("iscsi_device_maps"), HOWTO_MAPS).unwrap();
    let got: Vec<_> = maps
        .iter()
        .map(|m| (m.channel, m.lun, m.partition, m.name.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, 0, 1, "disk0a"),
            (0, 0, 2, "disk0b"),
            (0, 1, 1, "disk1a"),
            (0, 2, 1, "disk2a"),
            (1, 0, 0, "dvd0"),
            (1, 1, 1, "disk0a"),
            (1, 1, 2, "disk0b"),
            (1, 2, 1, "disk1a"),
        ]
    );
}

fn config_dir(initiator: &str, auth: Option<(&str, u32)>, maps: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sysconfig")).unwrap();
    fs::write(
        dir.path().join("initiatorname.iscsi"),
        "InitiatorName=iqn.2005-03.org.core-iscsi:01:abcdefabcdef\n",
    )
    .unwrap();
    fs::write(dir.path().join("sysconfig/initiator"), initiator).unwrap();
    if let Some((text, mode)) = auth {
        let p = dir.path().join("sysconfig/initiator_auth");
        fs::write(&p, text).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
    if let Some(text) = maps {
        fs::write(dir.path().join("sysconfig/iscsi_device_maps"), text).unwrap();
    }
    dir
}

#[test]
fn the_whole_howto_loads_with_its_warnings() {
    let dir = config_dir(HOWTO_CHANNELS, Some((HOWTO_AUTH, 0o600)), Some(HOWTO_MAPS));
    let loaded = load(&ConfigPaths::new(dir.path())).unwrap();
    let c = &loaded.config;
    assert_eq!(
        c.initiator_name,
        "iqn.2005-03.org.core-iscsi:01:abcdefabcdef"
    );
    assert!(c.channels[&0].auth.is_some());
    assert!(
        c.channels[&1].auth.is_none(),
        "AuthMethod=None: credentials not attached"
    );
    assert_eq!(c.maps.len(), 8);
    let auth = dir
        .path()
        .join("sysconfig/initiator_auth")
        .display()
        .to_string();
    let w: Vec<String> = loaded.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 4, "{w:#?}");
    // Channel 1's four connections are what the module opens: no warning about them.
    assert!(!w.iter().any(|w| w.contains("connections")), "{w:#?}");
    assert!(w.contains(&format!("{auth}:8: field 2 (mutual): warning: channel 0 also offers AuthMethod None, so a target can skip authentication and the mutual check")), "{w:#?}");
    assert!(w.contains(&format!("{auth}:9: field 1 (channel): warning: channel 1 does not offer CHAP (AuthMethod=None); these credentials are not used")), "{w:#?}");
    // JSON and Debug output of the whole config never show a secret.
    let json = serde_json::to_string(c).unwrap();
    let debug = format!("{loaded:?}");
    for s in SECRETS {
        assert!(!json.contains(s), "secret {s} in JSON");
        assert!(!debug.contains(s), "secret {s} in Debug");
    }
}

#[test]
fn cross_file_errors() {
    let ini = "CHANNEL=\"0 1 127.0.0.1 3260 0 AuthMethod=CHAP\"\n";
    // CHAP without an AUTH line.
    let dir = config_dir(ini, None, None);
    let e = load(&ConfigPaths::new(dir.path())).unwrap_err().to_string();
    let p = dir.path().display();
    assert_eq!(
        e,
        format!("{p}/sysconfig/initiator:1: field 7 (keys): AuthMethod offers CHAP but {p}/sysconfig/initiator_auth has no AUTH line for channel 0")
    );
    // AUTH for a channel that does not exist.
    let dir = config_dir(
        ini,
        Some((
            "AUTH=\"0 0 u secretsecret12\"\nAUTH=\"7 0 u secretsecret12\"\n",
            0o600,
        )),
        None,
    );
    let e = load(&ConfigPaths::new(dir.path())).unwrap_err().to_string();
    let p = dir.path().display();
    assert_eq!(e, format!("{p}/sysconfig/initiator_auth:2: field 1 (channel): channel 7 is not defined in {p}/sysconfig/initiator"));
    assert!(!e.contains("secretsecret12"));
    // DEVICE for an unknown channel.
    let dir = config_dir(
        ini,
        Some(("AUTH=\"0 0 u secretsecret12\"\n", 0o600)),
        Some("DEVICE=\"0 0 1 a\"\nDEVICE=\"3 0 1 b\"\n"),
    );
    let e = load(&ConfigPaths::new(dir.path())).unwrap_err().to_string();
    let p = dir.path().display();
    assert_eq!(e, format!("{p}/sysconfig/iscsi_device_maps:2: field 1 (channel): channel 3 is not defined in {p}/sysconfig/initiator"));
    // Missing initiatorname.iscsi: reported with the rest, first.
    fs::remove_file(dir.path().join("initiatorname.iscsi")).unwrap();
    let e = load(&ConfigPaths::new(dir.path())).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{p}/initiatorname.iscsi: does not exist (create it with: initiator-iname --write)\n\
             {p}/sysconfig/iscsi_device_maps:2: field 1 (channel): channel 3 is not defined in {p}/sysconfig/initiator"
        )
    );
}

/// Every bad line of every file in one run, each once: a channel whose CHANNEL line is
/// wrong is not reported again as undefined by its AUTH and DEVICE lines, nor as lacking
/// credentials when its AUTH line is wrong.
#[test]
fn every_error_of_every_file_once() {
    let dir = config_dir(
        "CHANNEL=\"0 1 127.0.0.1 3260x 0 AuthMethod=CHAP\"\n\
         CHANNEL=\"1 1 127.0.0.1 3260 0 AuthMethod=CHAP iqn.2003-01.org.example:t\"\n\
         CHANNEL=\"2 1 127.0.0.1 3260 0 AuthMethod=None\"\n",
        Some((
            "AUTH=\"0 0 alice secretsecret12\"\nAUTH=\"1 2 bob secretsecret13\"\n",
            0o600,
        )),
        Some("DEVICE=\"0 0 1 a\"\nDEVICE=\"2 0 x b\"\nDEVICE=\"9 0 1 c\"\n"),
    );
    let e = load(&ConfigPaths::new(dir.path())).unwrap_err();
    let p = dir.path().display();
    let lines: Vec<String> = e.errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        lines,
        [
            format!("{p}/sysconfig/initiator:1: field 5 (port): \"3260x\" is not a port number (1-65535)"),
            format!("{p}/sysconfig/initiator_auth:2: field 2 (mutual): must be 0 (one-way CHAP) or 1 (mutual CHAP)"),
            format!("{p}/sysconfig/iscsi_device_maps:2: field 3 (partition): \"x\" is not a partition number (0-255, 0 = whole device)"),
            format!("{p}/sysconfig/iscsi_device_maps:3: field 1 (channel): channel 9 is not defined in {p}/sysconfig/initiator"),
        ]
    );
    assert!(!e.to_string().contains("secretsecret"));
}

/// Two channels may reach one target (multipath), but not mount two LUNs at one place.
#[test]
fn two_maps_on_one_mount_point_are_refused() {
    let t = "iqn.2003-01.org.example:disks";
    let ini = format!(
        "CHANNEL=\"0 1 127.0.0.1 3260 0 {t}\"\nCHANNEL=\"1 1 127.0.0.2 3260 0 {}\"\n",
        t.to_uppercase().replacen("IQN", "iqn", 1)
    );
    let dir = config_dir(
        &ini,
        None,
        Some("DEVICE=\"0 0 1 data\"\nDEVICE=\"1 1 1 logs\"\n"),
    );
    load(&ConfigPaths::new(dir.path())).expect("two channels to one target, different names");
    fs::write(
        dir.path().join("sysconfig/iscsi_device_maps"),
        "DEVICE=\"0 0 1 data\"\nDEVICE=\"1 1 1 data\"\n",
    )
    .unwrap();
    let e = load(&ConfigPaths::new(dir.path())).unwrap_err().to_string();
    let p = dir.path().display();
    assert_eq!(
        e,
        format!("{p}/sysconfig/iscsi_device_maps:2: field 4 (name): \"data\" would mount at /{}/data like line 1 (channel 0), since channels 0 and 1 reach the same target: use another name", t.to_uppercase().replacen("IQN", "iqn", 1))
    );
}

/// A configuration with no channel is valid: a fresh install starts nothing.
#[test]
fn no_channel_is_a_valid_configuration() {
    let dir = config_dir("# nothing yet\n", None, None);
    let loaded = load(&ConfigPaths::new(dir.path())).unwrap();
    assert!(loaded.config.channels.is_empty());
    fs::remove_file(dir.path().join("sysconfig/initiator")).unwrap();
    assert!(load(&ConfigPaths::new(dir.path()))
        .unwrap()
        .config
        .channels
        .is_empty());
}

/// The files that decide what root logs in to and mounts: not writable by group or others,
/// owned by root or the user running the tool; the secrets file is not a symbolic link.
#[test]
fn files_root_acts_on_are_protected() {
    let ini = "CHANNEL=\"0 1 127.0.0.1 3260 0 AuthMethod=CHAP\"\n";
    let dir = config_dir(
        ini,
        Some(("AUTH=\"0 0 u secretsecret12\"\n", 0o600)),
        Some("DEVICE=\"0 0 1 a\"\n"),
    );
    let paths = ConfigPaths::new(dir.path());
    load(&paths).unwrap();
    for (file, mode) in [(&paths.initiator, 0o664), (&paths.device_maps, 0o646)] {
        fs::set_permissions(file, fs::Permissions::from_mode(mode)).unwrap();
        let e = load(&paths).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: mode {mode:04o} lets group or others write this file, which decides what root logs in to and mounts; run: chmod go-w {}",
                file.display(),
                file.display()
            )
        );
        fs::set_permissions(file, fs::Permissions::from_mode(0o644)).unwrap();
    }
    // A symbolic link to a private file is still refused: the link decides what is read.
    let real = dir.path().join("real_auth");
    fs::rename(&paths.auth, &real).unwrap();
    std::os::unix::fs::symlink(&real, &paths.auth).unwrap();
    let e = load(&paths).unwrap_err().to_string();
    assert_eq!(e, format!("{}: is a symbolic link: a file of CHAP secrets must be the file itself (replace the link with the file it points to, mode 600)", paths.auth.display()));
    fs::remove_file(&paths.auth).unwrap();
    fs::rename(&real, &paths.auth).unwrap();
    // Owned by someone else (only root can make such a file).
    if nix::unistd::geteuid().is_root() {
        for file in [&paths.initiator, &paths.auth, &paths.device_maps] {
            nix::unistd::chown(file.as_path(), Some(nix::unistd::Uid::from_raw(4321)), None)
                .unwrap();
            let e = load(&paths).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "{}: is owned by uid 4321, not by root",
                    file.display()
                )) && e.ends_with(&format!("run: chown root {}", file.display())),
                "{e}"
            );
            nix::unistd::chown(file.as_path(), Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        }
    }
    load(&paths).unwrap();
}

#[test]
fn link_local_ipv6_takes_an_interface() {
    let chans = parse_initiator(
        Path::new("initiator"),
        "CHANNEL=\"0 1 fe80::1%lo 3260 0\"\r\nCHANNEL=\"1 1\t[fe80::2%2] 3260 0\"\r\n",
    )
    .unwrap();
    assert_eq!(chans[&0].portals[0].scope.as_deref(), Some("lo"));
    assert_eq!(chans[&0].portals[0].endpoint(), "[fe80::1%lo]:3260");
    assert_eq!(
        chans[&1].portals[0].endpoint_with_scope(Some("2")),
        "[fe80::2%2]:3260"
    );
}

#[test]
fn auth_file_mode_is_checked() {
    for (mode, ok) in [
        (0o600, true),
        (0o400, true),
        (0o644, false),
        (0o640, false),
        (0o660, false),
        (0o602, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("initiator_auth");
        fs::write(&p, HOWTO_AUTH).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        match read_auth_file(&p) {
            Ok(text) => {
                assert!(ok, "mode {mode:o} accepted");
                assert!(String::from_utf8_lossy(&text.unwrap()).contains("AUTH="));
            }
            Err(e) => {
                assert!(!ok, "mode {mode:o} refused: {e}");
                assert!(matches!(e, ConfigError::Permissions { .. }));
                let s = e.to_string();
                assert_eq!(
                    s,
                    format!(
                        "{}: mode {mode:04o} lets group or others read or write this file of CHAP secrets; run: chmod 600 {}",
                        p.display(),
                        p.display()
                    )
                );
                for secret in SECRETS {
                    assert!(!s.contains(secret));
                }
            }
        }
    }
    // A missing auth file is no credentials, not an error.
    assert!(read_auth_file(Path::new("/nonexistent/initiator_auth"))
        .unwrap()
        .is_none());
}

#[test]
fn load_refuses_a_world_readable_auth_file() {
    let dir = config_dir(HOWTO_CHANNELS, Some((HOWTO_AUTH, 0o644)), None);
    let e = load(&ConfigPaths::new(dir.path())).unwrap_err();
    assert!(
        matches!(e.errors(), [ConfigError::Permissions { mode: 0o644, .. }]),
        "{e}"
    );
}

#[test]
fn generated_names_are_valid_and_unique() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let n = generate_initiator_name(None).unwrap();
        let suffix = n.strip_prefix("iqn.2005-03.org.core-iscsi:01:").unwrap();
        assert_eq!(suffix.len(), 12);
        assert!(suffix
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        validate_iscsi_name(&n).unwrap();
        assert!(seen.insert(n), "duplicate name");
    }
    assert!(generate_initiator_name(Some("iqn.2001-04.com.example"))
        .unwrap()
        .starts_with("iqn.2001-04.com.example:"));
    assert!(generate_initiator_name(Some("bogus")).is_err());
}

#[test]
fn ensure_initiator_name_creates_once_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("initiatorname.iscsi");
    let first = ensure_initiator_name(dir.path()).unwrap();
    let EnsuredName::Created(name) = &first else {
        panic!("{first:?}")
    };
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o644);
    let content = fs::read_to_string(&path).unwrap();
    assert!(content.contains(&format!("InitiatorName={name}\n")));
    // Again: the same name, file untouched.
    let second = ensure_initiator_name(dir.path()).unwrap();
    assert_eq!(second, EnsuredName::Existing(name.clone()));
    assert_eq!(fs::read_to_string(&path).unwrap(), content);
    // An administrator's own file is kept as is, even with another prefix.
    fs::write(
        &path,
        "# mine\nInitiatorName=iqn.1994-05.com.redhat:abcdef\n",
    )
    .unwrap();
    assert_eq!(
        ensure_initiator_name(dir.path()).unwrap(),
        EnsuredName::Existing("iqn.1994-05.com.redhat:abcdef".into())
    );
    // An invalid existing file is an error, and is still not touched.
    fs::write(&path, "InitiatorName=garbage\n").unwrap();
    assert!(ensure_initiator_name(dir.path()).is_err());
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "InitiatorName=garbage\n"
    );
    // No temporary file left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn secret_type_is_redacted() {
    let s = core_iscsi_tools::config::Secret::new(b"hunter2hunter2".to_vec());
    assert_eq!(format!("{s:?}"), "<redacted>");
    assert_eq!(format!("{s}"), "<redacted>");
    assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
    assert_eq!(s.expose(), b"hunter2hunter2");
}

#[test]
fn man_page_documents_every_key_and_attribute() {
    use core_iscsi_tools::config::attrs::ATTRS;
    use core_iscsi_tools::config::keys::KEYS;
    let page = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../Documentation/man/initiator.5"),
    )
    .unwrap();
    for k in KEYS {
        assert!(page.contains(k.name), "initiator(5) lacks key {}", k.name);
    }
    for a in ATTRS {
        let section = page
            .split(&format!(".B {}\n", a.name))
            .nth(1)
            .unwrap_or_else(|| panic!("initiator(5) lacks {}", a.name));
        let body = section.split(".TP").next().unwrap();
        assert!(
            body.contains(&format!("Default {}.", a.default))
                || body.contains(&format!("Default\n.B {}", a.default)),
            "initiator(5): {} default is not {}",
            a.name,
            a.default
        );
        if let Some((min, max)) = a.range {
            assert!(
                body.contains(&format!("{min} ")) && body.contains(&format!("{max}")),
                "initiator(5): range of {}",
                a.name
            );
        }
    }
}
