"""The composition root: the command line and the demo, which put the packages together.

Everything may be imported from here; nothing imports ``ankang``.
"""
