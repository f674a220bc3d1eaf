"""The offline seed channel: python runtime, converted PyPI wheels and Debian's voms."""
