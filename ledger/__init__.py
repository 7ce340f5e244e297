"""The books: what was rented, what it cost, and when owning a card would be cheaper.

`ledger` never imports `launcher` nor boto3 at module level; everything here can be used
as a library (`from ledger.db import open_ledger`).
"""
