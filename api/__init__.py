"""People: the command line, and (later) HTTP, auth and pages."""
