"""Command-line entry points: ``discoseq-index`` (build/info/verify) and ``discoseq``."""
