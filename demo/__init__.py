"""The privguard demo: a small event platform guarded by privguard."""
