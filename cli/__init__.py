"""lrserve.cli"""
