"""The foundation every stage stands on: errors and the one subprocess runner, progress, the one
scheduler, the one store, expressions and version specifiers."""
