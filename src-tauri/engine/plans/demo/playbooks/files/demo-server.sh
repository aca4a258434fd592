#!/bin/sh
# Starts the demo web server once: a static server on 127.0.0.1, detached, with a
# pid file. Running it again while the server runs changes nothing.
set -eu
umask 077
action=${1:?usage: demo-server.sh start|stop DEMO_ROOT}
root=${2:?usage: demo-server.sh start|stop DEMO_ROOT}
. "$root/config/server.env"
pidfile="$root/run/server.pid"
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
case "$action" in
  start)
    if running; then echo "already running (pid $(cat "$pidfile"))"; exit 0; fi
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
