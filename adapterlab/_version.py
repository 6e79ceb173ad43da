"""adapterlab's version, in a leaf module: the configs record it (``peft_version``) without importing
the package's ``__init__``, which wires up integrations."""

__version__ = "0.1.0"
