"""Files in and out: reading user images safely, limits, exports and temporary files."""
