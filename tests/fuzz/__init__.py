"""Fuzz tests (hypothesis) of what a peer can send. A package like tests/security."""
