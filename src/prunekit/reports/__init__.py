"""Tables and plots from result records."""

from prunekit.reports.tables import results_table, summarise

__all__ = ["results_table", "summarise"]
