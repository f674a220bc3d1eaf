"""DiracX's container images from our channels, without a daemon: dated bases (``base``,
``services-base``, ``tasks-base``, ``client-base``) and release images (``services``, ``tasks``,
``client``) standing on a named base tag, written as OCI image layouts.

Modules, one concern each: :mod:`.roles` (which packages go in which layer), :mod:`.layers`
(deterministic layer archives), :mod:`.rootfs` (the OS layer), :mod:`.oci` (the layout, written
by umoci), :mod:`.tags` (dated tags and their record), :mod:`.build` (the command's logic),
:mod:`.registry` (push and pull with skopeo), :mod:`.podman` (running them with a test-local
configuration), :mod:`.result` (typed results).
"""
