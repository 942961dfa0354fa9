"""torchdoctor's faces: the CLI, the tray icon, notifications and autostart."""
