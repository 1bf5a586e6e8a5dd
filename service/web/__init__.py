"""The web page: runs, curves, changes with a preview, a spec playground."""
