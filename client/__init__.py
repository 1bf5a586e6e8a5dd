"""lrserve.client"""
