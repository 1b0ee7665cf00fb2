"""leadscore: open lead-conversion prediction (features -> training -> serving)."""

__version__ = "0.1.0"
