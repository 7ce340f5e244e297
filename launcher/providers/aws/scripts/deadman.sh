#!/bin/sh
# gpuhire dead-man switch (runs as root on the rented box, started by user-data).
# The box shuts itself down -- and, launched with shutdown behaviour "terminate", is then
# terminated and no longer billed -- when the launcher's heartbeat is missing for too long or
# the maximum lifetime has passed. The launcher keeps it quiet by touching the heartbeat file
# over SSH (`touch /var/run/gpuhire/heartbeat`); only the file's mtime counts.
# Settings (environment):
#   GPUHIRE_HEARTBEAT  heartbeat file (default /var/run/gpuhire/heartbeat)
#   GPUHIRE_DEADMAN_S  seconds without a fresh heartbeat before shutdown (default 900)
#   GPUHIRE_DEADLINE   epoch seconds after which the box shuts down anyway (default 0: none)
#   GPUHIRE_CHECK_S    seconds between checks (default 30)
#   GPUHIRE_SHUTDOWN   the shutdown command (default "shutdown -h now"; tests replace it)
set -u
hb=${GPUHIRE_HEARTBEAT:-/var/run/gpuhire/heartbeat}
limit=${GPUHIRE_DEADMAN_S:-900}
deadline=${GPUHIRE_DEADLINE:-0}
every=${GPUHIRE_CHECK_S:-30}
cmd=${GPUHIRE_SHUTDOWN:-shutdown -h now}
# A missing heartbeat file counts from when the switch started: the launcher gets `limit`
# seconds after boot to connect for the first time.
started=$(date +%s)

while :; do
    now=$(date +%s)
    last=$started
    if [ -e "$hb" ]; then
        last=$(stat -c %Y "$hb" 2>/dev/null || echo "$started")
    fi
    reason=""
    if [ "$deadline" -gt 0 ] && [ "$now" -ge "$deadline" ]; then
        reason="maximum lifetime passed"
    elif [ $((now - last)) -ge "$limit" ]; then
        reason="no heartbeat for $((now - last)) s (limit $limit s)"
    fi
    if [ -n "$reason" ]; then
        echo "gpuhire dead-man switch: $reason; shutting down" >&2
        logger -t gpuhire "dead-man switch: $reason; shutting down" 2>/dev/null || true
        sh -c "$cmd"
        exit 0
    fi
    sleep "$every"
done
