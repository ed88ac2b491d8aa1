"""Roomscribe's shared core: settings, domain models, wire protocol, storage, tokens, audio."""

__version__ = "0.1.0"
