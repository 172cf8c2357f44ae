"""The package version, written once: ``discoseq.__version__`` re-exports it and
``pyproject.toml`` reads it (``[tool.setuptools.dynamic]``). Not the index format version
(:data:`discoseq.index.format.FORMAT_VERSION`)."""

__version__ = "0.1.0"
