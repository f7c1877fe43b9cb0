"""The benchmark apps: the same endpoints written for every server interface."""
