"""Switchboard: the uWSGI signal framework as a standalone runtime."""

__version__ = "0.1.0"
