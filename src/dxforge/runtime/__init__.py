"""The self-contained runtime: what an installer carries besides the C library, built from
Debian's sources and packages."""
