"""Operators that run fleet operations from DAGs, one module per vendor, all on one shared base."""
