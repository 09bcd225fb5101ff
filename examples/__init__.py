"""Example applications built on squall."""
