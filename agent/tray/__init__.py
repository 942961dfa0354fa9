"""The tray icon: pystray behind our own class, its menu as a pure function of the state."""
