"""The DIRACOS-style installer: construct.yaml spec, staging, payload, shell header."""
