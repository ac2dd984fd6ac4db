"""Orders, brokers (paper and live), the journal, the ledger, portfolio and PnL, accounts."""
