"""`dxforge release`: every stage of a release, and its notes."""
