"""dxforge: the distribution builder for DiracX."""

__version__ = "0.1.0"
