"""One module per dockable panel of the main window."""
