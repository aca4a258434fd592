#!/bin/sh
# Starts the demo web server once: a static server on 127.0.0.1, detached, with a
# pid file. Running it again while the server runs changes nothing. Before starting,
# it checks the port is free and, when it is not, names what holds it (pid and
# command, from /proc) and the way out: another demo_port.
set -eu
umask 077
action=${1:?usage: demo-server.sh start|stop DEMO_ROOT}
root=${2:?usage: demo-server.sh start|stop DEMO_ROOT}
. "$root/config/server.env"
pidfile="$root/run/server.pid"
port_free() {
  python3 - "$DEMO_BIND" "$DEMO_PORT" <<'PY'
import errno, os, socket, sys
bind, port = sys.argv[1], int(sys.argv[2])
probe = socket.socket()
probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
try:
    probe.bind((bind, port))
    sys.exit(0)
except OSError as e:
    failure = e
finally:
    probe.close()
way_out = ("set the demo_port variable to a free port "
           "(in the wizard, or: deploy --var demo_port=9000)")
if failure.errno != errno.EADDRINUSE:
    print(f"cannot listen on {bind}:{port}: {failure.strerror}; {way_out}", file=sys.stderr)
    sys.exit(1)
listening = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        with open(table) as f:
            for line in list(f)[1:]:
                cols = line.split()
                if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                    listening.add(f"socket:[{cols[9]}]")
    except OSError:
        pass
holders = []
for pid in sorted(filter(str.isdigit, os.listdir("/proc")), key=int):
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        if any(os.readlink(f"/proc/{pid}/fd/{fd}") in listening for fd in fds):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            holders.append(f"pid {pid} ({cmd})")
    except OSError:
        continue
who = ", ".join(holders) if holders else "a process this user cannot see"
print(f"port {port} on {bind} is already in use by {who}: stop it, or {way_out}",
      file=sys.stderr)
sys.exit(1)
PY
}
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
case "$action" in
  start)
    if running; then echo "already running (pid $(cat "$pidfile"))"; exit 0; fi
    port_free
    cd "$root/www"
    setsid python3 -m http.server "$DEMO_PORT" --bind "$DEMO_BIND" >"$root/run/server.log" 2>&1 < /dev/null &
    echo $! >"$pidfile"
    echo "started (pid $!)"
    ;;
  stop)
    if running; then kill "$(cat "$pidfile")"; fi
    rm -f "$pidfile"
    echo stopped
    ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
