"""`dxforge build`: sources fetched, then the recipes built by rattler-build into the output
channel."""
