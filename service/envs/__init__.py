"""The environments: every Python environment on the machine, its wheel tags and its torch build."""
