"""Names the infer tests share (a module of its own: `conftest` is ambiguous across test folders)."""

REGION = "us-east-1"
BUCKET = "gpuhire-infer-test"


def fleet_config(tmp_path, **infer: object):  # type: ignore[no-untyped-def]
    """A config.toml for a local fleet on the test bucket; `infer` sets [infer] keys."""
    keys = {"fleet": "local", "retry_delay_s": 0, **infer}
    lines = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in keys.items())
    path = tmp_path / "config.toml"
    path.write_text(f'[aws]\nbucket = "{BUCKET}"\n[infer]\n{lines}\n[infer.lines_per_s]\ncpu = 25.0\n')
    return path
