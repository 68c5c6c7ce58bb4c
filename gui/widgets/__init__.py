"""One file per view of the desktop app."""
