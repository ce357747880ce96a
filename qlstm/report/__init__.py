"""Latency/resource estimates and run reports."""
