"""Sensors that wait for devices to reach a state, in poke, reschedule or deferrable mode."""
