"""Status icons, shipped as package data (see agent/tray.py for how they are used)."""
