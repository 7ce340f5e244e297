"""Shell scripts that run on a rented box (installed by the user-data): package data.

deadman.sh     shuts the box down when the launcher's heartbeat stops or its lifetime is over
spot-watch.sh  polls IMDSv2 for a spot interruption notice and sends SIGTERM to the job
"""

from importlib import resources


def script(name: str) -> str:
    """The text of one script (`deadman.sh` or `spot-watch.sh`)."""
    return resources.files(__name__).joinpath(name).read_text()
