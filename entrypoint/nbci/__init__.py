"""nbci: prove that a repository's Jupyter notebooks still run."""

__version__ = "0.1.0"
