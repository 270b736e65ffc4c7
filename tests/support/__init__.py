"""Shared test infrastructure: free ports, readiness polling, processes stopped by PID."""
