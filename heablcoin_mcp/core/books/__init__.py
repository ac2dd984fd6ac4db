"""The books: money helpers, order and fill models, the ledger and the journal (below risk and trading)."""
