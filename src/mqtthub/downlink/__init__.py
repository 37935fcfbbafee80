"""Downlink: tasks to people and commands to devices, with delivery tracking."""
