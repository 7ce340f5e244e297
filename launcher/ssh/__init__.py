"""SSH to a box: pinned host keys, per-job keys, transfers, detached commands (paramiko only here)."""
