"""Health reports and configuration diagnosis."""
