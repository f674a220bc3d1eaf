"""The one isolation model: a pilot's site, minimal OS roots and the Debian mirror they come from,
foreign architectures under emulation."""
