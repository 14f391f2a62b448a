"""One module per command; :mod:`rmapcheck.cli` registers them."""
