"""Names the infer tests share (a module of its own: `conftest` is ambiguous across test folders)."""

REGION = "us-east-1"
BUCKET = "gpuhire-infer-test"
