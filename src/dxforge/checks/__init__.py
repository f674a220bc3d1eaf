"""What proves a build: the pilot checks, DiracX's own test suites, the end-to-end server and client
test."""
