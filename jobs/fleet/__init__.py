"""The box-side fleet worker (`python -m jobs.fleet.worker`): runs in the trainer image."""
