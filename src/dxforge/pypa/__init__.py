"""Python packaging: the package index as pip is configured, core metadata, PyPI -> conda-forge
names."""
