//! Table of malformed configuration lines, each with the exact one-line error it must produce.

use std::path::Path;

use core_iscsi_tools::config::auth::parse_auth;
use core_iscsi_tools::config::device_maps::parse_device_maps;
use core_iscsi_tools::config::initiator::parse_initiator;
use core_iscsi_tools::config::initiator_name::parse_initiator_name;

const INI: &str = "/etc/sysconfig/initiator";
const AUTH: &str = "/etc/sysconfig/initiator_auth";
const MAPS: &str = "/etc/sysconfig/iscsi_device_maps";
const NAME: &str = "/etc/initiatorname.iscsi";

/// (file, text, expected error)
const CASES: &[(&str, &str, &str)] = &[
    // --- initiator: fields 1-6 ---
    (INI, "CHANNEL=\"0 1 eth0 192.168.0.1 32600x 0\"",
     "/etc/sysconfig/initiator:1: field 5 (port): \"32600x\" is not a port number (1-65535)"),
    (INI, "CHANNEL=\"0 1 192.168.0.1 32600x 0\"",
     "/etc/sysconfig/initiator:1: field 5 (port): \"32600x\" is not a port number (1-65535)"),
    (INI, "# c\n\nCHANNEL=\"0 1 192.168.0.1 0 0\"",
     "/etc/sysconfig/initiator:3: field 5 (port): \"0\" is not a port number (1-65535)"),
    (INI, "CHANNEL=\"0 1 192.168.0.1 65536 0\"",
     "/etc/sysconfig/initiator:1: field 5 (port): \"65536\" is not a port number (1-65535)"),
    (INI, "CHANNEL=\"x 1 192.168.0.1 3260 0\"",
     "/etc/sysconfig/initiator:1: field 1 (channel): \"x\" is not a channel id (0-65535)"),
    (INI, "CHANNEL=\"0 0 192.168.0.1 3260 0\"",
     "/etc/sysconfig/initiator:1: field 2 (connections): \"0\" is not a connection count (1-16)"),
    (INI, "CHANNEL=\"0\"",
     "/etc/sysconfig/initiator:1: field 2 (connections): missing"),
    (INI, "CHANNEL=\"0 1\"",
     "/etc/sysconfig/initiator:1: field 4 (address): missing"),
    (INI, "CHANNEL=\"0 1 eth0 192.168.0.1\"",
     "/etc/sysconfig/initiator:1: field 5 (port): missing"),
    (INI, "CHANNEL=\"0 1 eth0 192.168.0.1 3260\"",
     "/etc/sysconfig/initiator:1: field 6 (interconnect): missing"),
    (INI, "CHANNEL=\"0 1 192.168.0.1 3260 1\"",
     "/etc/sysconfig/initiator:1: field 6 (interconnect): \"1\" is not supported (only 0, TCP)"),
    (INI, "CHANNEL=\"0 1 192.168.0.1 3260 tcp\"",
     "/etc/sysconfig/initiator:1: field 6 (interconnect): \"tcp\" is not a number (0 = TCP)"),
    (INI, "CHANNEL=\"0 1 averyveryverylongdev 192.168.0.1 3260 0\"",
     "/etc/sysconfig/initiator:1: field 3 (network device): \"averyveryverylongdev\" is not a network device name (1-15 characters, no '/' or ':')"),
    (INI, "CHANNEL=\"0 1 eth0 192.168.0.256 3260 0\"",
     "/etc/sysconfig/initiator:1: field 4 (address): \"192.168.0.256\" is not an IPv4 address"),
    (INI, "CHANNEL=\"0 1 eth0 192.168.0.1:3260 3260 0\"",
     "/etc/sysconfig/initiator:1: field 4 (address): \"192.168.0.1:3260\" is not an IPv6 address (the port is field 5, not part of the address)"),
    (INI, "CHANNEL=\"0 1 eth0 bad_host 3260 0\"",
     "/etc/sysconfig/initiator:1: field 4 (address): \"bad_host\" is not an IPv4 address, IPv6 address or host name"),
    // A host name in field 3: a broken line is blamed by the reading (with or without a
    // network device) that has fewer problems.
    (INI, "CHANNEL=\"0 1 target.example.com 326O 0\"",
     "/etc/sysconfig/initiator:1: field 5 (port): \"326O\" is not a port number (1-65535)"),
    (INI, "CHANNEL=\"0 1 storage 326O 0 MaxConnections=4\"",
     "/etc/sysconfig/initiator:1: field 5 (port): \"326O\" is not a port number (1-65535)"),
    (INI, "CHANNEL=\"0 1 eth0 storage 326O 0\"",
     "/etc/sysconfig/initiator:1: field 5 (port): \"326O\" is not a port number (1-65535)"),
    (INI, "CHANNEL=\"0 1 eth0 storage 3260 tcp\"",
     "/etc/sysconfig/initiator:1: field 6 (interconnect): \"tcp\" is not a number (0 = TCP)"),
    (INI, "CHANNEL=\"0 1 eth0 10.0.0.1 0\"",
     "/etc/sysconfig/initiator:1: field 5 (port): \"0\" is not a port number (1-65535)"),
    (INI, "CHANNEL=\"0 1 eth0 fe80::1%eth0 0\"",
     "/etc/sysconfig/initiator:1: field 5 (port): \"0\" is not a port number (1-65535)"),
    (INI, "CHANNEL=\"0 1 [fe80::1%eth0] 326O 0\"",
     "/etc/sysconfig/initiator:1: field 5 (port): \"326O\" is not a port number (1-65535)"),
    (INI, "CHANNEL=\"0 1 averyveryverylongdev storage 3260 0\"",
     "/etc/sysconfig/initiator:1: field 3 (network device): \"averyveryverylongdev\" is not a network device name (1-15 characters, no '/' or ':')"),
    (INI, "CHANNEL=\"0 1 storage 3260 0\"\nCHANNEL=\"0 1 eth1 storage2 3260 0\"\nCHANNEL=\"0 1 storage3 3260 1\"",
     "/etc/sysconfig/initiator:3: field 6 (interconnect): \"1\" is not supported (only 0, TCP)"),
    // --- initiator: keys (field 7) ---
    (INI, "CHANNEL=\"0 1 ::1 3260 0 MaxRecvDataSegmentLength=511\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): MaxRecvDataSegmentLength=\"511\" is not a number in 512..16777215"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 MaxBurstLength=16777216\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): MaxBurstLength=\"16777216\" is not a number in 512..16777215"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 FirstBurstLength=65536;MaxBurstLength=8192\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): FirstBurstLength (65536) must not exceed MaxBurstLength (8192)"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 ImmediateData=yes\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): ImmediateData=\"yes\" is not Yes or No (values are case-sensitive)"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 InitialR2T=Maybe\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): InitialR2T=\"Maybe\" is not Yes or No"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 HeaderDigest=CRC32\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): HeaderDigest: \"CRC32\" is not one of None, CRC32C"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 DataDigest=CRC32C,CRC32C\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): DataDigest: \"CRC32C\" is listed twice"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=SRP\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): AuthMethod: \"SRP\" is not one of CHAP, None (not supported)"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=CHAP,,None\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): AuthMethod=\"CHAP,,None\" has an empty list item"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 ErrorRecoveryLevel=3\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): ErrorRecoveryLevel=\"3\" is not a number in 0..2"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 MaxConnections=0\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): MaxConnections=\"0\" is not a number in 1..65535"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 DefaultTime2Wait=3601\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): DefaultTime2Wait=\"3601\" is not a number in 0..3600"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 DefaultTime2Retain=-1\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): DefaultTime2Retain=\"-1\" is not a number in 0..3600"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 MaxOutstandingR2T=65536\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): MaxOutstandingR2T=\"65536\" is not a number in 1..65535"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 MaxRecvDataSegmentSize=8192\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): unknown iSCSI key \"MaxRecvDataSegmentSize\""),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 Authmethod=None\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): unknown iSCSI key \"Authmethod\" (keys are case-sensitive: AuthMethod)"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 TargetName=iqn.2001-04.com.example:t\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): TargetName is not set here: give the target name as field 9"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 OFMarker=No\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): OFMarker is obsolete (removed by RFC 7143)"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 ImmediateData=No;ImmediateData=Yes\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): ImmediateData is given twice"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 ImmediateData\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): \"ImmediateData\" is not Key=value"),
    // --- initiator: attributes (field 8) ---
    (INI, "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=None nopout_timout=5\"",
     "/etc/sysconfig/initiator:1: field 8 (attributes): unknown channel attribute \"nopout_timout\""),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=None nopout_timeout=5, queue_depth=0\"",
     "/etc/sysconfig/initiator:1: field 8 (attributes): queue_depth=\"0\" is not a number in 1..1024"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=None tmf_timeout=0\"",
     "/etc/sysconfig/initiator:1: field 8 (attributes): tmf_timeout=\"0\" is not a number in 1..3600"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=None nopout_timeout=5, nopout_timeout=6\"",
     "/etc/sysconfig/initiator:1: field 8 (attributes): nopout_timeout is given twice"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 nopout_timeout=5 ImmediateData=No\"",
     "/etc/sysconfig/initiator:1: field 8 (attributes): unknown channel attribute \"ImmediateData\" (iSCSI keys belong in field 7, before the attributes)"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=None chap_algorithms=SHA512\"",
     "/etc/sysconfig/initiator:1: field 8 (attributes): chap_algorithms: \"SHA512\" is not one of MD5, SHA1, SHA256, SHA3-256"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=None login_timeout=0\"",
     "/etc/sysconfig/initiator:1: field 8 (attributes): login_timeout=\"0\" is not a number in 1..3600"),
    // --- initiator: target name (field 9) ---
    (INI, "CHANNEL=\"0 1 ::1 3260 0 iqn.2005-13.com.example:t\"",
     "/etc/sysconfig/initiator:1: field 9 (target name): \"iqn.2005-13.com.example:t\" lacks the date: iqn.YYYY-MM.reversed.domain[:id]"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 eui.12345\"",
     "/etc/sysconfig/initiator:1: field 9 (target name): \"eui.12345\" is not eui. followed by 16 hexadecimal digits"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 iqn.2005-03.com.example:t AuthMethod=None\"",
     "/etc/sysconfig/initiator:1: field 9 (target name): \"iqn.2005-03.com.example:t\": the target name must be the last field"),
    // --- initiator: several lines of one channel ---
    (INI, "CHANNEL=\"1 2 eth0 10.0.0.2 3260 0 ImmediateData=No\"\nCHANNEL=\"1 2 eth1 10.0.0.3 3260 0 ImmediateData=Yes\"",
     "/etc/sysconfig/initiator:2: field 7 (keys): ImmediateData=Yes conflicts with ImmediateData=No given for channel 1 on line 1"),
    (INI, "CHANNEL=\"1 2 10.0.0.2 3260 0 AuthMethod=None queue_depth=8\"\nCHANNEL=\"1 2 10.0.0.3 3260 0 AuthMethod=None queue_depth=16\"",
     "/etc/sysconfig/initiator:2: field 8 (attributes): queue_depth=16 conflicts with queue_depth=8 given for channel 1 on line 1"),
    (INI, "CHANNEL=\"1 1 10.0.0.2 3260 0 iqn.2001-04.com.example:a\"\nCHANNEL=\"1 1 10.0.0.3 3260 0 iqn.2001-04.com.example:b\"",
     "/etc/sysconfig/initiator:2: field 9 (target name): \"iqn.2001-04.com.example:b\" differs from the target name \"iqn.2001-04.com.example:a\" given earlier for channel 1"),
    (INI, "CHANNEL=\"1 1 10.0.0.2 3260 0\"\nCHANNEL=\"1 1 eth1 10.0.0.2 3260 0\"",
     "/etc/sysconfig/initiator:2: field 4 (address): portal 10.0.0.2:3260 is already defined for channel 1 on line 1"),
    (INI, "CHANNEL=\"1 2 10.0.0.2 3260 0 MaxConnections=3\"\nCHANNEL=\"1 2 10.0.0.3 3260 0\"",
     "/etc/sysconfig/initiator:2: field 2 (connections): channel 1 has 4 connections but MaxConnections=3"),
    // The module opens at most 16 connections per session.
    (INI, "CHANNEL=\"0 17 ::1 3260 0\"",
     "/etc/sysconfig/initiator:1: field 2 (connections): \"17\" is not a connection count (1-16)"),
    (INI, "CHANNEL=\"1 8 eth0 10.0.0.2 3260 0\"\nCHANNEL=\"1 8 eth1 10.0.0.3 3260 0\"\nCHANNEL=\"1 1 10.0.0.4 3260 0\"",
     "/etc/sysconfig/initiator:3: field 2 (connections): channel 1 would have 17 connections (at most 16 per session)"),
    (INI, "CHANNEL=\"1 1 10.0.0.1 3260 0\"\nCHANNEL=\"1 1 10.0.0.2 3260 0\"\nCHANNEL=\"1 1 10.0.0.3 3260 0\"\nCHANNEL=\"1 1 10.0.0.4 3260 0\"\nCHANNEL=\"1 1 10.0.0.5 3260 0\"\nCHANNEL=\"1 1 10.0.0.6 3260 0\"\nCHANNEL=\"1 1 10.0.0.7 3260 0\"\nCHANNEL=\"1 1 10.0.0.8 3260 0\"\nCHANNEL=\"1 1 10.0.0.9 3260 0\"",
     "/etc/sysconfig/initiator:9: field 4 (address): channel 1 would have 9 portals (at most 8 per session)"),
    // --- initiator: what RFC 7143 allows but this initiator (and so the module) refuses ---
    (INI, "CHANNEL=\"0 1 ::1 3260 0 ErrorRecoveryLevel=1\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): ErrorRecoveryLevel=1 is not supported: this initiator does only ErrorRecoveryLevel=0 (the module would refuse it at start)"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 MaxBurstLength=65536\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): FirstBurstLength (262144, the default) must not exceed MaxBurstLength (65536)"),
    // --- initiator: line syntax ---
    (INI, "CHANNEL=\"0 1 ::1 3260 0",
     "/etc/sysconfig/initiator:1: unterminated quote (expected VAR=\"...\")"),
    (INI, "CHANEL=\"0 1 ::1 3260 0\"",
     "/etc/sysconfig/initiator:1: unknown variable \"CHANEL\" (expected CHANNEL=\"...\")"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0\" junk",
     "/etc/sysconfig/initiator:1: unexpected text \"junk\" after the closing quote (quote the whole value; comments start with #)"),
    (INI, "CHANNEL=\"\"",
     "/etc/sysconfig/initiator:1: CHANNEL= has an empty value"),
    // --- what an editor or a careless paste leaves in a file ---
    (INI, "\u{FEFF}CHANNEL=\"0 1 ::1 3260 0\"",
     "/etc/sysconfig/initiator:1: the file starts with a UTF-8 byte order mark (BOM, bytes EF BB BF): save it without one"),
    (INI, "CHANNEL=\u{201C}0 1 ::1 3260 0\u{201D}",
     "/etc/sysconfig/initiator:1: curly quote \u{201C} (U+201C) where a straight quote \" belongs (a word processor or web page replaced it)"),
    (INI, "# fine\nCHANNEL=\"0 1 ::1 3260 0 caf\u{e9}\"",
     "/etc/sysconfig/initiator:2: field 9 (target name): \"caf\u{e9}\" is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id], eui. or naa.)"),
    (INI, "channel=\"0 1 ::1 3260 0\"",
     "/etc/sysconfig/initiator:1: \"channel\": variable names are case-sensitive, write CHANNEL=\"...\""),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 immediatedata=No\"",
     "/etc/sysconfig/initiator:1: field 8 (attributes): unknown channel attribute \"immediatedata\" (the iSCSI key is spelt ImmediateData: keys are case-sensitive)"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=None Nopout_timeout=5\"",
     "/etc/sysconfig/initiator:1: field 7 (keys): unknown iSCSI key \"Nopout_timeout\" (the channel attribute is spelt nopout_timeout, in field 8)"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 AuthMethod=None disks\"",
     "/etc/sysconfig/initiator:1: field 9 (target name): \"disks\" is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id], eui. or naa.)"),
    (INI, "CHANNEL=\"0 1 ::1 3260 0 IQN.2003-01.org.example:disks\"",
     "/etc/sysconfig/initiator:1: field 9 (target name): \"IQN.2003-01.org.example:disks\": an iSCSI name starts with lowercase iqn."),
    (INI, "CHANNEL=\"0 1 fe80::1 3260 0\"",
     "/etc/sysconfig/initiator:1: field 4 (address): \"fe80::1\" is a link-local IPv6 address, which needs its interface: write fe80::1%eth0 (with your interface's name)"),
    (INI, "CHANNEL=\"0 1 2001:db8::1%eth0 3260 0\"",
     "/etc/sysconfig/initiator:1: field 4 (address): \"2001:db8::1%eth0\": only a link-local IPv6 address (fe80::/10) takes a %interface"),
    (INI, "CHANNEL=\"0 1 fe80::1%eth/0 3260 0\"",
     "/etc/sysconfig/initiator:1: field 4 (address): \"fe80::1%eth/0\": \"eth/0\" after % is not a network interface name or index"),
    // --- initiator_auth (never quotes the file's text) ---
    (AUTH, "AUTH=\"0 2 alice secretsecret12\"",
     "/etc/sysconfig/initiator_auth:1: field 2 (mutual): must be 0 (one-way CHAP) or 1 (mutual CHAP)"),
    (AUTH, "AUTH=\"0 1 alice secretsecret12\"",
     "/etc/sysconfig/initiator_auth:1: field 5 (mutual user): missing (required when field 2 (mutual) is 1)"),
    (AUTH, "AUTH=\"0 1 alice secretsecret12 bobtarget\"",
     "/etc/sysconfig/initiator_auth:1: field 6 (mutual secret): missing (required when field 2 (mutual) is 1)"),
    (AUTH, "AUTH=\"0 0 alice secretsecret12 bobtarget tsecretsecret\"",
     "/etc/sysconfig/initiator_auth:1: field 5 (mutual user): not allowed when field 2 (mutual) is 0"),
    (AUTH, "AUTH=\"0 1 alice secretsecret12 bobtarget secretsecret12\"",
     "/etc/sysconfig/initiator_auth:1: field 6 (mutual secret): must differ from field 4 (secret): RFC 7143 forbids one secret for both directions"),
    (AUTH, "AUTH=\"0 0 alice\"",
     "/etc/sysconfig/initiator_auth:1: field 4 (secret): missing"),
    (AUTH, "AUTH=\"zero 0 alice secretsecret12\"",
     "/etc/sysconfig/initiator_auth:1: field 1 (channel): is not a channel id (0-65535)"),
    (AUTH, "AUTH=\"0 0 alice secretsecret12\"\nAUTH=\"0 0 carol secretsecret13\"",
     "/etc/sysconfig/initiator_auth:2: field 1 (channel): channel 0 already has an AUTH line (line 1)"),
    (AUTH, "AUTH=\"0 0 alice secretsecret12\" secretsecret12",
     "/etc/sysconfig/initiator_auth:1: unexpected text after the closing quote (quote the whole value; comments start with #)"),
    (AUTH, "AUTH=\"0 0 alice secretsecret12",
     "/etc/sysconfig/initiator_auth:1: unterminated quote (expected VAR=\"...\")"),
    (AUTH, "secretsecret12",
     "/etc/sysconfig/initiator_auth:1: expected AUTH=\"...\""),
    (AUTH, "AUTH =\"0 0 alice secretsecret12\"",
     "/etc/sysconfig/initiator_auth:1: a space before = (write AUTH=\"...\")"),
    (AUTH, "AUTH =\"0 0 alice s3cr\u{201D}tPassw0rd\"",
     "/etc/sysconfig/initiator_auth:1: a space before = (write AUTH=\"...\")"),
    (INI, "CHANNEL = \"0 1 10.0.0.1 3260 0\"",
     "/etc/sysconfig/initiator:1: a space before = (write CHANNEL=\"...\")"),
    // A curly quote that broke the line is named as the cause, without showing it.
    (AUTH, "AUTH=\u{201C}0 0 alice secretsecret12\u{201D}",
     "/etc/sysconfig/initiator_auth:1: a curly quote where a straight quote \" belongs (a word processor or web page replaced it)"),
    // --- iscsi_device_maps ---
    (MAPS, "DEVICE=\"0 0 1 a/b\"",
     "/etc/sysconfig/iscsi_device_maps:1: field 4 (name): \"a/b\" is not a single path component (no '/', not . or ..)"),
    (MAPS, "DEVICE=\"0 0 1 ..\"",
     "/etc/sysconfig/iscsi_device_maps:1: field 4 (name): \"..\" is not a single path component (no '/', not . or ..)"),
    (MAPS, "DEVICE=\"0 0 1\"",
     "/etc/sysconfig/iscsi_device_maps:1: field 4 (name): missing"),
    (MAPS, "DEVICE=\"0 x 1 d\"",
     "/etc/sysconfig/iscsi_device_maps:1: field 2 (lun): \"x\" is not a LUN number"),
    (MAPS, "DEVICE=\"0 0 256 d\"",
     "/etc/sysconfig/iscsi_device_maps:1: field 3 (partition): \"256\" is not a partition number (0-255, 0 = whole device)"),
    (MAPS, "DEVICE=\"0 0 1 d extra\"",
     "/etc/sysconfig/iscsi_device_maps:1: field 5 (extra): unexpected \"extra\" (DEVICE has 4 fields)"),
    (MAPS, "DEVICE=\"0 0 1 d\" # one\nDEVICE=\"0 0 1 e\" # two",
     "/etc/sysconfig/iscsi_device_maps:2: field 3 (partition): channel 0 LUN 0 partition 1 is already mapped on line 1"),
    (MAPS, "DEVICE=\"0 0 1 d\"\nDEVICE=\"0 1 1 d\"",
     "/etc/sysconfig/iscsi_device_maps:2: field 4 (name): \"d\" is already used for channel 0 on line 1"),
    (MAPS, "DEVICE=\"0 0 0 d\"\nDEVICE=\"0 0 1 e\"",
     "/etc/sysconfig/iscsi_device_maps:2: field 3 (partition): channel 0 LUN 0 is mapped both whole (partition 0) and by partition (line 1)"),
    // --- initiatorname.iscsi ---
    (NAME, "InitiatorName=iqn.2005.org.core-iscsi",
     "/etc/initiatorname.iscsi:1: field 1 (InitiatorName): \"iqn.2005.org.core-iscsi\" lacks the date: iqn.YYYY-MM.reversed.domain[:id]"),
    (NAME, "InitiatorName=iqn.2005-03.org.core_iscsi:01:abc",
     "/etc/initiatorname.iscsi:1: field 1 (InitiatorName): \"iqn.2005-03.org.core_iscsi:01:abc\" contains '_': use letters, digits, '-', '.' and ':'"),
    (NAME, "InitiatorName=foo",
     "/etc/initiatorname.iscsi:1: field 1 (InitiatorName): \"foo\" is not an iSCSI name (iqn.YYYY-MM.reversed.domain[:id], eui. or naa.)"),
    (NAME, "InitiatorName=naa.123456789012345",
     "/etc/initiatorname.iscsi:1: field 1 (InitiatorName): \"naa.123456789012345\" is not naa. followed by 16 or 32 hexadecimal digits"),
    (NAME, "InitiatorName=iqn.2005-03.org.a:1\nInitiatorName=iqn.2005-03.org.a:2",
     "/etc/initiatorname.iscsi:2: InitiatorName is given twice (first on line 1)"),
    (NAME, "## nothing\n",
     "/etc/initiatorname.iscsi: has no InitiatorName= line"),
];

/// Bytes that are not UTF-8: named with their line in a CHANNEL line, tolerated in a comment.
#[test]
fn a_byte_that_is_not_utf8_is_named_with_its_line() {
    let p = Path::new(INI);
    let text = b"# caf\xe9 in Latin-1: a comment, harmless\nCHANNEL=\"0 1 ::1 3260 0 iqn.2003-01.org.caf\xe9:t\"\n";
    let e = parse_initiator(p, text).unwrap_err().to_string();
    assert_eq!(
        e,
        "/etc/sysconfig/initiator:2: byte 0xE9 (at column 44) is not UTF-8: save the file as UTF-8 or ASCII"
    );
    assert!(parse_initiator(p, b"# caf\xe9\nCHANNEL=\"0 1 ::1 3260 0\"\n").is_ok());
    // In the secrets file the byte's value is not shown.
    let e = parse_auth(Path::new(AUTH), b"AUTH=\"0 0 alice s\xe9cretsecret12\"\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/etc/sysconfig/initiator_auth:1: byte 18 of the line is not UTF-8 (save the file as UTF-8 or ASCII)"
    );
}

/// A refused CHANNEL line changes nothing: the lines after it are judged without its
/// connections, portal, target name or keys, so only the bad line is reported.
#[test]
fn a_refused_line_is_not_counted_against_the_next() {
    let cases = [
        "CHANNEL=\"0 10 10.0.0.1 3260 0\"\n\
         CHANNEL=\"0 10 10.0.0.2 3260 0\"\n\
         CHANNEL=\"0 1 10.0.0.3 3260 0\"\n",
        "CHANNEL=\"0 1 10.0.0.1 3260 0 iqn.2003-01.org.example:a\"\n\
         CHANNEL=\"0 1 10.0.0.2 3260 0 iqn.2003-01.org.example:b\"\n\
         CHANNEL=\"0 1 10.0.0.2 3260 0\"\n",
        "CHANNEL=\"0 1 10.0.0.1 3260 0\"\n\
         CHANNEL=\"0 1 10.0.0.2 3260 0 MaxBurstLength=4096\"\n\
         CHANNEL=\"0 1 10.0.0.3 3260 0 ImmediateData=No\"\n",
    ];
    for text in cases {
        let e = parse_initiator(Path::new(INI), text).unwrap_err();
        let lines: Vec<String> = e.errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 1, "{text}: {lines:?}");
        assert!(lines[0].starts_with("/etc/sysconfig/initiator:2: "), "{lines:?}");
    }
}

/// Every bad line of initiatorname.iscsi is reported at once, in line order.
#[test]
fn every_bad_line_of_the_name_file_at_once() {
    let text = "initiatorname=iqn.2005-03.org.x:y\nfoo bar\nInitiatorName=iqn.bad\n";
    let e = parse_initiator_name(Path::new(NAME), text).unwrap_err();
    let lines: Vec<String> = e.errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{NAME}:{}: ", i + 1)), "{lines:?}");
    }
}

/// A curly quote inside a secret that is quoted properly is part of the secret.
#[test]
fn a_curly_quote_in_a_secret_is_data() {
    let text = "AUTH=\"0 0 alice s3cr\u{201D}tPassw0rd\"\n";
    let (auth, _) = parse_auth(Path::new(AUTH), text.as_bytes()).expect("a valid line");
    let secret = auth[&0].credentials.initiator.secret.expose();
    assert_eq!(secret, "s3cr\u{201D}tPassw0rd".as_bytes());
}

/// Every bad line of a file is reported in one run, each once, in line order.
#[test]
fn every_bad_line_of_a_file_at_once() {
    let text = "CHANNEL=\"0 1 ::1 32600x 0\"\n\
                CHANNEL=\"1 1 ::1 3260 0 ImmediateData=yes\"\n\
                CHANNEL=\"2 1 ::1 3260 0\"\n\
                CHANEL=\"3 1 ::1 3260 0\"\n\
                CHANNEL=\"4 1 fe80::1 3260 0\"\n";
    let e = parse_initiator(Path::new(INI), text).unwrap_err();
    let lines: Vec<String> = e.errors().iter().map(|e| e.to_string()).collect();
    assert_eq!(
        lines,
        [
            "/etc/sysconfig/initiator:1: field 5 (port): \"32600x\" is not a port number (1-65535)",
            "/etc/sysconfig/initiator:2: field 7 (keys): ImmediateData=\"yes\" is not Yes or No (values are case-sensitive)",
            "/etc/sysconfig/initiator:4: unknown variable \"CHANEL\" (expected CHANNEL=\"...\")",
            "/etc/sysconfig/initiator:5: field 4 (address): \"fe80::1\" is a link-local IPv6 address, which needs its interface: write fe80::1%eth0 (with your interface's name)",
        ]
    );
    assert_eq!(e.to_string(), lines.join("\n"));
    let e = parse_device_maps(
        Path::new(MAPS),
        "DEVICE=\"0 x 1 a\"\nDEVICE=\"0 0 1 b\"\nDEVICE=\"0 0 1 a/b\"\n",
    )
    .unwrap_err();
    assert_eq!(e.errors().len(), 2, "{e}");
    assert_eq!(e.errors()[1].line_number(), Some(3));
    let e = parse_auth(
        Path::new(AUTH),
        "AUTH=\"0 2 u secretsecret12\"\nAUTH=\"1 0\"\n",
    )
    .unwrap_err();
    assert_eq!(e.errors().len(), 2, "{e}");
}

fn parse(file: &str, text: &str) -> Result<(), String> {
    let p = Path::new(file);
    match file {
        INI => parse_initiator(p, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        AUTH => parse_auth(p, text).map(drop).map_err(|e| e.to_string()),
        MAPS => parse_device_maps(p, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        NAME => parse_initiator_name(p, text)
            .map(drop)
            .map_err(|e| e.to_string()),
        _ => unreachable!(),
    }
}

#[test]
fn every_malformed_line_gives_its_exact_error() {
    let mut failures = Vec::new();
    for (file, text, want) in CASES {
        match parse(file, text) {
            Ok(()) => failures.push(format!("accepted: {text:?}\n   want: {want}")),
            Err(got) if got != *want => {
                failures.push(format!("{text:?}\n   got:  {got}\n   want: {want}"))
            }
            Err(got) => assert!(!got.contains('\n'), "multi-line error: {got}"),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn auth_errors_never_quote_the_file() {
    for (file, text, _) in CASES.iter().filter(|(f, _, _)| *f == AUTH) {
        let err = parse(file, text).unwrap_err();
        for word in [
            "secretsecret12",
            "secretsecret13",
            "tsecretsecret",
            "alice",
            "bobtarget",
            "carol",
        ] {
            let after_path = err.strip_prefix(AUTH).unwrap();
            assert!(!after_path.contains(word), "{err} quotes {word}");
        }
    }
}
