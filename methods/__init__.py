"""corrbench's methods, one module (or folder) each; installed as ``corrbench.methods`` and found through
the ``corrbench.methods`` entry-point group (see pyproject.toml)."""
