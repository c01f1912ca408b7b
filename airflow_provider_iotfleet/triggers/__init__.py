"""Deferrable waits: triggers polling vendors from the triggerer's event loop, one module per vendor."""
