"""Transports: where scheduler commands run and how files reach the work directory."""
