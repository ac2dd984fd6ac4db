"""The risk engine: limits, trading state, regime-adjusted parameters, sizing and pre-trade checks."""
