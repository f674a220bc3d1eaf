"""A distribution project: construct.yaml, the target, the recipes and their graph, where outputs
go."""
