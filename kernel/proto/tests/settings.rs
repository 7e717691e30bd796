//! The administrator's key list applied to our offer.

use iscsi_proto::settings::{apply_list, write, ListError, SettingError};
use iscsi_proto::text::{DigestPref, Limits};

#[test]
fn howto_examples_apply() {
    let mut l = Limits::default();
    apply_list(&mut l, b"MaxRecvDataSegmentLength=32768;ImmediateData=No").unwrap();
    assert_eq!(l.max_recv_data_segment_length, 32768);
    assert!(!l.immediate_data);
    apply_list(&mut l, b" HeaderDigest=CRC32C ; DataDigest=CRC32C,None;;").unwrap();
    assert_eq!(l.header_digest, DigestPref::Crc32c);
    assert_eq!(l.data_digest, DigestPref::PreferCrc32c);
}

#[test]
fn refusals_name_the_item_and_change_nothing() {
    let before = Limits::default();
    let cases: &[(&[u8], usize, SettingError)] = &[
        (
            b"InitialR2T=Yes;MaxRecvDataSegmentLength=511",
            1,
            SettingError::OutOfRange,
        ),
        (
            b"MaxRecvDataSegmentLength=16777216",
            0,
            SettingError::OutOfRange,
        ),
        (b"ImmediateData=yes", 0, SettingError::BadValue),
        (b"ErrorRecoveryLevel=3", 0, SettingError::OutOfRange),
        (b"HeaderDigest=MD5", 0, SettingError::BadValue),
        (b"TargetName=iqn.x", 0, SettingError::UnknownKey),
        (b"AuthMethod=CHAP", 0, SettingError::UnknownKey),
        (b"InitialR2T", 0, SettingError::MissingEquals),
        (b"MaxBurstLength=abc", 0, SettingError::BadValue),
        (
            b"FirstBurstLength=65536;MaxBurstLength=8192",
            0,
            SettingError::FirstBurstAboveMaxBurst,
        ),
    ];
    for (list, index, error) in cases {
        let mut l = before;
        assert_eq!(
            apply_list(&mut l, list),
            Err(ListError {
                index: *index,
                error: *error
            }),
            "{}",
            String::from_utf8_lossy(list)
        );
        assert_eq!(l, before, "half-applied: {}", String::from_utf8_lossy(list));
    }
}

#[test]
fn write_reads_back() {
    let mut l = Limits::default();
    apply_list(
        &mut l,
        b"HeaderDigest=None,CRC32C;MaxOutstandingR2T=4;DefaultTime2Wait=0",
    )
    .unwrap();
    let mut s = String::new();
    write(&l, &mut s).unwrap();
    let mut again = Limits {
        max_outstanding_r2t: 9,
        ..Limits::default()
    };
    apply_list(&mut again, s.as_bytes()).unwrap();
    assert_eq!(again, l);
}

/// Every entry of SETTINGS is applied (its bounds in, one past them out) and written back:
/// the table the tools validate with is the parser the module runs.
#[test]
fn every_setting_is_applied_within_its_range() {
    use iscsi_proto::settings::{apply, setting, ValueKind, SETTINGS};
    let mut written = String::new();
    write(&Limits::default(), &mut written).unwrap();
    let names: Vec<&str> = written
        .split(';')
        .map(|kv| kv.split('=').next().unwrap())
        .collect();
    let table: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    assert_eq!(
        names, table,
        "write and SETTINGS list the same keys in order"
    );
    for s in SETTINGS {
        assert_eq!(setting(s.name.as_bytes()), Some(s));
        let (good, bad): (Vec<String>, Vec<(String, SettingError)>) = match s.kind {
            ValueKind::Number { min, max } => {
                let mut bad = vec![
                    (format!("{}", max + 1), SettingError::OutOfRange),
                    ("x".into(), SettingError::BadValue),
                ];
                if min > 0 {
                    bad.push((format!("{}", min - 1), SettingError::OutOfRange));
                }
                (vec![min.to_string(), max.to_string()], bad)
            }
            ValueKind::Boolean => (
                vec!["Yes".into(), "No".into()],
                vec![("yes".into(), SettingError::BadValue)],
            ),
            ValueKind::Digest => (
                vec![
                    "None".into(),
                    "CRC32C".into(),
                    "CRC32C,None".into(),
                    "None,CRC32C".into(),
                ],
                vec![("CRC32C,CRC32C".into(), SettingError::BadValue)],
            ),
        };
        for v in good {
            let mut l = Limits {
                first_burst_length: 512,
                ..Limits::default()
            };
            apply(&mut l, s.name.as_bytes(), v.as_bytes()).unwrap();
            let mut out = String::new();
            write(&l, &mut out).unwrap();
            assert!(
                out.split(';').any(|kv| kv == format!("{}={v}", s.name)),
                "{}={v} not applied: {out}",
                s.name
            );
        }
        for (v, e) in bad {
            let mut l = Limits::default();
            assert_eq!(
                apply(&mut l, s.name.as_bytes(), v.as_bytes()),
                Err(e),
                "{}={v}",
                s.name
            );
            assert_eq!(l, Limits::default());
        }
    }
    for key in [
        "AuthMethod",
        "InitiatorAlias",
        "TargetName",
        "headerdigest",
        "",
    ] {
        assert_eq!(setting(key.as_bytes()), None, "{key}");
    }
}

#[test]
fn unsupported_offers_are_named() {
    use iscsi_proto::settings::{check_supported, Unsupported};
    let mut l = Limits::default();
    assert_eq!(check_supported(&l), Ok(()));
    apply_list(&mut l, b"ErrorRecoveryLevel=1").unwrap();
    assert_eq!(check_supported(&l), Err(Unsupported::ErrorRecoveryLevel));
    let mut l = Limits::default();
    apply_list(&mut l, b"MaxConnections=2").unwrap();
    assert_eq!(
        check_supported(&l).map_err(|u| u.key()),
        Err("MaxConnections")
    );
}
