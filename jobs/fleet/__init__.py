"""The box-side fleet worker (`python -m jobs.fleet.worker`): runs in the trainer image."""

# S3 objects of a fleet job carry this tag (URL-encoded `gpuhire:kind=fleet`): the bucket's
# lifecycle rule expires them. The launcher (launcher/infer/queue.py) and the worker both tag.
FLEET_TAGGING = "gpuhire%3Akind=fleet"
