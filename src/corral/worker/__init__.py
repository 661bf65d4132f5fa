"""Running attempts: in local pool processes or as ``python -m corral.worker`` on a node."""
