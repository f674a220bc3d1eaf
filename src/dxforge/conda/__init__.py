"""Conda packages and channels: the one rattler adapter, package assembly, ELF files and SBOMs."""
