"""The train flow: check, quote, rent, ship, follow, recover, settle (`gpuhire train`)."""
