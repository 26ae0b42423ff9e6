"""Data files shipped inside the package (see DATA_NOTICE.md)."""
