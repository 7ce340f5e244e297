"""Providers: places that rent (or lend) machines, behind one typed interface (base.Provider).

`aws` lives in aws*.py (boto3 imported lazily there only); `local` and `ssh` belong to the
train flow. Nothing here imports boto3 at import time.
"""
