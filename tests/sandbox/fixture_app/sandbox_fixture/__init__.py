"""Tiny handlers that exercise the sandbox's Lambda stand-ins (not watershed code)."""
