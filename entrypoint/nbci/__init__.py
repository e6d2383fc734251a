"""nbci: prove that a repository's Jupyter notebooks still run."""

__version__ = "1.0.0"
