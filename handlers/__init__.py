"""The handler protocol and registry, the checkpoint store and the built-in handlers."""
