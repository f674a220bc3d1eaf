"""The `dxforge` command line: parses, calls the logic, renders its typed result."""
