"""heablcoin-mcp: an MCP tool server for careful, paper-first crypto trading assistants."""

__version__ = "0.1.0"
