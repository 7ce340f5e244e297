"""gpuhire's launcher: rents machines, runs jobs on them, and the `gpuhire` command line."""

__version__ = "0.1.0"
