#!/bin/bash
# The module's kernel TCP socket against a userspace echo server on loopback, over IPv4 and
# IPv6: gathered sends, zero-copy page sends, exact and page receives byte for byte, socket
# callbacks, timeouts, shutdown; and the errors a user sees for a closed port, an
# unreachable network and a silent host (connect timeout); sends that may not wait return at
# once from a socket whose peer never reads. No leak afterwards.
# vm-args: --append kmemleak=on --timeout 300
# vm-seconds: 28
set -euo pipefail
. "$REPO/tests/e2e/lib.bash"

root=/sys/kernel/config/core_iscsi
port=7777
ip link set lo up

python3 - "$port" <<'PY' &
import socket, sys, threading
port = int(sys.argv[1])
def serve(conn):
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            conn.sendall(data)
def listen(family, host):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    s.listen(16)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
threading.Thread(target=listen, args=(socket.AF_INET6, "::1"), daemon=True).start()
listen(socket.AF_INET, "127.0.0.1")
PY
echo_pid=$!
trap 'kill $echo_pid 2>/dev/null || true' EXIT
for i in $(seq 1 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port)).close(); socket.create_connection(('::1', $port)).close()" 2>/dev/null && break
    nap 0.1
done

kmemleak_clear
dmesg -C
load_module

for addr in "127.0.0.1:$port" "[::1]:$port"; do
    echo "socket $addr" > $root/selftest || fail "socket self-test against $addr failed: $(dmesg | grep selftest)"
    dmesg | grep -qF "selftest: socket $addr: ok" || fail "no success report for $addr"
    ok "$(dmesg | grep -oF "socket $addr: " | head -1)$(dmesg | grep -F "selftest: socket $addr: " | grep -o '[0-9]* bytes echoed.*' | head -1)"
done
ok "callbacks fire on data and on shutdown, none after clear_callbacks; receive timeout and EAGAIN; recv after shutdown"

expect_error() { # test-command expected-strerror
    local err
    if err=$( { echo "$1" > $root/selftest; } 2>&1 ); then fail "'$1' succeeded, expected '$2'"; fi
    case $err in *"$2"*) ;; *) fail "'$1': expected '$2', got '$err'" ;; esac
    ok "'$1' fails with '$2'"
}
expect_error "connect 127.0.0.1:$((port + 1))" "Connection refused"
expect_error "connect [::1]:$((port + 1))" "Connection refused"
# The VM has no network device, only loopback: an address off loopback has no route, so the
# connect fails before anything is sent (192.0.2.0/24 is reserved for documentation).
expect_error "connect 192.0.2.1:3260" "Network is unreachable"
# A loopback listener that never accepts, its backlog filled: further SYNs are dropped and the
# connect times out, all on 127.0.0.1.
python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 3998)); s.listen(0)
fill = [socket.create_connection(("127.0.0.1", 3998)) for _ in range(1)]
open("/tmp/backlog-full", "w").close()
time.sleep(600)
' &
full=$!
wait_for "[ -e /tmp/backlog-full ]" 20 || fail "the backlog filler did not start"
start=$(date +%s%N)
expect_error "connect 127.0.0.1:3998" "Connection timed out"
kill $full
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ $elapsed_ms -ge 1800 ] && [ $elapsed_ms -lt 6000 ] || fail "connect timeout took $elapsed_ms ms, expected about 2000"
ok "the connect timeout (2 s) is honoured: $elapsed_ms ms"
expect_error "socket 1.2.3" "Invalid argument"
echo "connect 127.0.0.1:$port" > $root/selftest || fail "connect to the echo server failed"
ok "connect to a listening port succeeds"

# A peer that accepts and never reads: the module's inline sends must never wait for room in a
# socket whose target stopped reading (queuecommand would hold scsi_host_block up), so they
# send with MSG_DONTWAIT and leave the rest of a PDU to the transmit work. The self-test fills
# the send buffer and sends a PDU of each shape the module sends inline: each returns at once,
# the socket having taken less than all of it.
python3 -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 3997)); s.listen(8)
open("/tmp/sink-up", "w").close()
held = None
while True:
    held = s.accept()[0]  # the one before is closed: one fill at a time
' &
sink=$!
wait_for "[ -e /tmp/sink-up ]" 20 || fail "the sink did not start"
echo "fill 127.0.0.1:3997" > $root/selftest || fail "fill self-test failed: $(dmesg | grep selftest | tail -n 3)"
for shape in "48 + 4096 + 4 bytes copied" "17 pages less 2 spliced" "64 pages spliced" "136 spliced pieces of 4"; do
    line=$(dmesg | grep -F "selftest: fill 127.0.0.1:3997: " | grep -F "$shape") || fail "no report of the $shape shape"
    ok "${line#*selftest: fill 127.0.0.1:3997: }"
done
# Each fill's stream is dropped with an abortive close: nothing of its megabytes is left
# queued in an orphaned socket (the last one would be, while the sink holds its end). The
# memory left is the sink's: what it received and never read.
read -r orphans tcp_pages < <(awk '/^TCP:/ { for (i = 1; i < NF; i++) { if ($i == "orphan") o = $(i + 1); if ($i == "mem") m = $(i + 1) } print o, m }' /proc/net/sockstat)
[ "$orphans" = 0 ] || fail "after the fills: $orphans orphaned TCP sockets ($(grep TCP: /proc/net/sockstat))"
ok "after the fills: no orphaned socket, $tcp_pages pages of TCP memory"
kill $sink

unload_module
kmemleak_check
