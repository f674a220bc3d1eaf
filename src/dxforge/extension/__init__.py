"""A VO's own distribution on top of DiracX: a project folder made from an extension's packages
on the package index (:mod:`~dxforge.extension.init`), built against the DiracX distribution it
names (:mod:`~dxforge.extension.base`)."""
