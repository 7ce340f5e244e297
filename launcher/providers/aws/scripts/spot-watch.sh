#!/bin/sh
# gpuhire spot-notice watcher (runs as root on the rented box, started by user-data).
# Polls the instance metadata service (IMDSv2: PUT a token, then GET with it) for a spot
# interruption notice every 5 s, as AWS advises:
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html
# On a notice it writes the notice to a file (the launcher reads it over SSH) and sends
# SIGTERM to the job, whose pid is in the pid file, so it checkpoints within the two minutes.
# Settings (environment):
#   GPUHIRE_IMDS         metadata endpoint (default http://169.254.169.254; tests use loopback)
#   GPUHIRE_PID_FILE     the job's pid file (default /var/run/gpuhire/job.pid)
#   GPUHIRE_NOTICE_FILE  where the notice is written (default /var/run/gpuhire/spot-notice)
#   GPUHIRE_POLL_S       seconds between polls (default 5)
set -u
imds=${GPUHIRE_IMDS:-http://169.254.169.254}
pid_file=${GPUHIRE_PID_FILE:-/var/run/gpuhire/job.pid}
notice_file=${GPUHIRE_NOTICE_FILE:-/var/run/gpuhire/spot-notice}
every=${GPUHIRE_POLL_S:-5}

while :; do
    token=$(curl -sf -m 2 -X PUT "$imds/latest/api/token" \
        -H "X-aws-ec2-metadata-token-ttl-seconds: 300" 2>/dev/null) || token=""
    if [ -n "$token" ]; then
        # 404 (curl -f fails) until a notice exists; then {"action": ..., "time": ...}
        if notice=$(curl -sf -m 2 -H "X-aws-ec2-metadata-token: $token" \
            "$imds/latest/meta-data/spot/instance-action" 2>/dev/null) && [ -n "$notice" ]; then
            printf '%s\n' "$notice" > "$notice_file"
            if [ -s "$pid_file" ]; then
                pid=$(cat "$pid_file")
                echo "gpuhire spot watcher: notice $notice; SIGTERM to $pid" >&2
                kill -TERM "$pid" 2>/dev/null || true
                exit 0
            fi
            # No job yet: keep polling; a job that starts in the last two minutes still hears it.
        fi
    fi
    sleep "$every"
done
