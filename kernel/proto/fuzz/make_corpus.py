#!/usr/bin/env python3
"""Regenerate the seed corpus (kernel/proto/fuzz/corpus/<target>/). Seeds are valid inputs the
mutators start from; cargo-fuzz adds what it finds to the same directories."""
import os, struct

D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

def put(target, name, data):
    os.makedirs(os.path.join(D, target), exist_ok=True)
    with open(os.path.join(D, target, name), "wb") as f:
        f.write(data)

def kv(*pairs):
    return b"".join(k.encode() + b"=" + v.encode() + b"\0" for k, v in pairs)

def login_rsp(t, c, csg, nsg, tsih=0, stat=0, cls=0, det=0, dlen=0):
    flags = (0x80 if t else 0) | (0x40 if c else 0) | (csg << 2) | nsg
    b = bytearray(48)
    b[0] = 0x23; b[1] = flags
    b[5:8] = dlen.to_bytes(3, "big")
    b[14:16] = tsih.to_bytes(2, "big")
    b[24:28] = stat.to_bytes(4, "big"); b[28:32] = (1).to_bytes(4, "big"); b[32:36] = (8).to_bytes(4, "big")
    b[36] = cls; b[37] = det
    return bytes(b)

def rec(bhs, data):
    return struct.pack(">H", len(data)) + bhs[:5] + len(data).to_bytes(3, "big") + bhs[8:] + data

ops = kv(("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxRecvDataSegmentLength", "65536"),
         ("MaxBurstLength", "262144"), ("FirstBurstLength", "65536"), ("InitialR2T", "Yes"),
         ("ImmediateData", "Yes"), ("TargetPortalGroupTag", "1"), ("DefaultTime2Wait", "2"))
put("text", "ops", ops)
put("text", "chap", kv(("CHAP_A", "5"), ("CHAP_I", "0x2a"), ("CHAP_C", "0b3q2+7w=="), ("X-foo", "1"), ("OFMarker", "No")))
put("text", "split", b"MaxBurstLen")

put("login", "noauth", b"\x00" + rec(login_rsp(1, 0, 0, 1), kv(("AuthMethod", "None")))
    + rec(login_rsp(1, 0, 1, 3, tsih=1, stat=1), ops))
put("login", "chap", b"\x01" + rec(login_rsp(0, 0, 0, 0), kv(("AuthMethod", "CHAP")))
    + rec(login_rsp(0, 0, 0, 0), kv(("CHAP_A", "5"), ("CHAP_I", "7"), ("CHAP_C", "0x0102030405060708")))
    + rec(login_rsp(1, 0, 0, 1), b"") + rec(login_rsp(1, 0, 1, 3, tsih=1), ops))
put("login", "mutual", b"\x02" + rec(login_rsp(0, 0, 0, 0), kv(("AuthMethod", "CHAP")))
    + rec(login_rsp(0, 0, 0, 0), kv(("CHAP_A", "7"), ("CHAP_I", "7"), ("CHAP_C", "0x0102030405060708")))
    + rec(login_rsp(1, 0, 0, 1), kv(("CHAP_N", "t"), ("CHAP_R", "0x" + "00" * 32))))
put("login", "continued", b"\x00" + rec(login_rsp(1, 0, 0, 1), b"")
    + rec(login_rsp(0, 1, 1, 1), ops[:20]) + rec(login_rsp(1, 0, 1, 3, tsih=1), ops[20:]))
put("login", "redirect", b"\x00" + rec(login_rsp(0, 0, 0, 0, cls=1, det=1), kv(("TargetAddress", "[::1]:3260,1"))))

put("pdu", "login_rsp", login_rsp(1, 0, 1, 3, tsih=1))
put("pdu", "read10", bytes.fromhex("01c0000000000000000000000000000014000000000004000000001400000018"
                                   "28000000000000000200000000000000"))
r2t = bytearray(48); r2t[0] = 0x31; r2t[1] = 0x80; r2t[44:48] = (65536).to_bytes(4, "big")
put("pdu", "r2t", bytes(r2t))
din = bytearray(48); din[0] = 0x25; din[1] = 0x83; din[4] = 2; din[5:8] = (4097).to_bytes(3, "big")
put("pdu", "data_in_ahs", bytes(din) + bytes([0, 17, 1, 0]) + bytes(range(16)) + bytes([0, 5, 2, 0, 0, 0, 16, 0]))

put("sendtargets", "two", kv(("TargetName", "iqn.2003-01.org.linux-iscsi:t1"), ("TargetAddress", "10.0.0.1:3260,1"),
    ("TargetAddress", "[fe80::1]:3261,2"), ("TargetName", "iqn.t2"), ("TargetAddress", "host.example")))
put("sense", "fixed", bytes([0xf0, 0, 2, 0, 0, 0, 9, 10, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0]))
put("sense", "descriptor", bytes([0x72, 3, 0x11, 0, 0, 0, 0, 12, 0, 10, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34]))
put("sense", "response", bytes([0, 18, 0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0]))
put("report_luns", "two", bytes([0, 0, 0, 16, 0, 0, 0, 0] + [0] * 8 + [0x41, 0x2c] + [0] * 6))
put("report_luns", "truncated", bytes([0, 0, 1, 0, 0, 0, 0, 0] + [0, 1] + [0] * 6))
