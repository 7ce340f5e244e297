"""What runs on the GPU box: the HTR trainer, inference and their ground-truth tools.

`jobs` imports nothing else of gpuhire (imports go `launcher -> jobs`), so the trainer image
needs only this package, torch and a few small image/XML libraries.
"""
