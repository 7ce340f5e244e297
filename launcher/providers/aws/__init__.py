"""The `aws` provider: spot and on-demand T4/L4 instances on EC2 (boto3 imported lazily, here only)."""
