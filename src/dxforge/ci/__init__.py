"""`dxforge ci`: the GitHub Actions workflows rendered from the project, and their local run."""
